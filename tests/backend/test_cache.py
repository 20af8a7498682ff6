import numpy as np
import pytest

from backend.pipelines.cache import ResultCache, content_key


def test_keys_depend_on_every_part_and_its_type():
    image = np.zeros((4, 4, 4), np.uint8)
    base = content_key(b"png bytes", image, {"steps": 500})
    assert base == content_key(b"png bytes", image.copy(), {"steps": 500})
    assert base != content_key(b"png bytez", image, {"steps": 500})
    assert base != content_key(b"png bytes", image.astype(np.uint16), {"steps": 500})
    assert base != content_key(b"png bytes", image.reshape(8, 2, 4), {"steps": 500})
    assert base != content_key(b"png bytes", image, {"steps": 501})
    assert content_key({"a": 1, "b": 2}) == content_key({"b": 2, "a": 1})
    assert content_key(b"ab", b"c") != content_key(b"a", b"bc")  # parts are length-delimited


def test_round_trip_survives_a_restart(tmp_path):
    arrays = {"means": np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32),
              "faces": np.arange(30, dtype=np.uint32).reshape(10, 3)}
    ResultCache(tmp_path).put("geometry", "k1", arrays, {"steps": 500})
    fresh = ResultCache(tmp_path)  # a new process: nothing in memory
    entry = fresh.get("geometry", "k1")
    assert entry is not None and entry.meta == {"steps": 500}
    for name, array in arrays.items():
        assert entry.arrays[name].dtype == array.dtype and np.array_equal(entry.arrays[name], array)
    assert fresh.get("geometry", "other") is None
    assert fresh.hits == {"geometry": 1} and fresh.misses == {"geometry": 1}


def test_entries_are_read_only(tmp_path):
    cache = ResultCache(tmp_path)
    source = np.ones(5, np.float32)
    cache.put("mesh", "k", {"a": source})
    source[0] = 7  # the caller's array stays theirs
    entry = cache.get("mesh", "k")
    assert entry.arrays["a"][0] == 1
    with pytest.raises(ValueError):
        entry.arrays["a"][0] = 3


@pytest.mark.parametrize("damage", ["truncate_npz", "garbage_meta", "missing_npz", "old_format"])
def test_a_corrupt_entry_is_a_miss_and_is_removed(tmp_path, damage):
    ResultCache(tmp_path).put("geometry", "k", {"a": np.arange(1000.0)})
    entry_dir = tmp_path / "geometry" / "k"
    if damage == "truncate_npz":
        data = (entry_dir / "arrays.npz").read_bytes()
        (entry_dir / "arrays.npz").write_bytes(data[:100])
    elif damage == "garbage_meta":
        (entry_dir / "meta.json").write_text("{not json")
    elif damage == "missing_npz":
        (entry_dir / "arrays.npz").unlink()
    else:
        (entry_dir / "meta.json").write_text('{"format": -1, "meta": {}}')
    fresh = ResultCache(tmp_path)
    assert fresh.get("geometry", "k") is None
    assert not entry_dir.exists()
    fresh.put("geometry", "k", {"a": np.zeros(3)})  # and the slot works again
    assert ResultCache(tmp_path).get("geometry", "k") is not None


def test_disk_is_bounded_least_recently_used_first(tmp_path):
    import os
    import time

    cache = ResultCache(tmp_path, max_disk_bytes=3 * 8_500, max_memory_bytes=0)
    for i in range(3):
        cache.put("geometry", f"k{i}", {"a": np.zeros(1000)})  # 8,000 bytes of data each
        os.utime(tmp_path / "geometry" / f"k{i}", (time.time() - 100 + i, time.time() - 100 + i))
    assert cache.get("geometry", "k0") is not None  # k0 becomes the most recently used
    cache.put("geometry", "k3", {"a": np.zeros(1000)})
    remaining = sorted(p.name for p in (tmp_path / "geometry").iterdir())
    assert remaining == ["k0", "k2", "k3"]


def test_memory_is_bounded(tmp_path):
    cache = ResultCache(tmp_path, max_memory_bytes=20_000)
    for i in range(5):
        cache.put("mesh", f"k{i}", {"a": np.zeros(1000)})
    assert cache.stats()["memory_bytes"] <= 20_000
    assert len(cache._memory) == 2


def test_unwritable_disk_does_not_fail_the_job(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = ResultCache(blocker / "cache")
    cache.put("geometry", "k", {"a": np.zeros(3)})  # logged, not raised
    assert cache.get("geometry", "k") is not None  # still served from memory
