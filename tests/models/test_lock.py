"""The models lock file: `models download` records the commit it fetched, loading and `models
verify` use it. The Hub's two network calls (model_info, snapshot_download) are replaced by a fake
that writes into a real on-disk Hugging Face cache layout, so nothing is downloaded."""

import fnmatch
import json
import shutil
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch

from backend.__main__ import main
from backend.models import records, registry as registry_module
from backend.models.hub import ModelUnavailableError, cached_snapshot
from backend.models.lock import LockFileError, ModelLock, is_commit, lock_path
from backend.models.registry import ModelRegistry, ModelSettings

from .hf_cache import COMMIT, OTHER_COMMIT, put_in_hf_cache, repo_folder

DEPTH = records.DEPTH.spec


class FakeHub:
    """A Hub whose `main` of every repository points at `head`; fetched files land in the cache."""

    def __init__(self, cache, source):
        self.cache, self.source, self.head, self.fetched = cache, source, COMMIT, []

    def _commit(self, revision):
        return revision if is_commit(revision or "") else self.head

    def model_info(self, repo_id, revision=None, **_):
        files = [str(p.relative_to(self.source)) for p in self.source.rglob("*") if p.is_file()]
        return SimpleNamespace(sha=self._commit(revision), siblings=[SimpleNamespace(rfilename=f) for f in files])

    def snapshot_download(self, repo_id, revision=None, allow_patterns=None, **_):
        revision = revision or "main"
        commit = self._commit(revision)
        self.fetched.append((repo_id, revision, sorted(allow_patterns or ())))
        snapshot = repo_folder(self.cache, repo_id) / "snapshots" / commit
        if not snapshot.exists():
            staging = self.cache.parent / f"staging-{commit}"
            for file in self.source.rglob("*"):
                name = str(file.relative_to(self.source))
                if file.is_file() and (allow_patterns is None or any(fnmatch.fnmatch(name, p) for p in allow_patterns)):
                    (staging / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, staging / name)
            put_in_hf_cache(self.cache, repo_id, staging, commit=commit, ref=None)
        if not is_commit(revision):  # like huggingface_hub: a branch gets a ref, a commit does not
            (repo_folder(self.cache, repo_id) / "refs").mkdir(parents=True, exist_ok=True)
            (repo_folder(self.cache, repo_id) / "refs" / revision).write_text(commit)
        return str(snapshot)


@pytest.fixture
def depth_source(tiny_registry):
    return tiny_registry.folder(DEPTH)


@pytest.fixture
def hub(hf_cache, depth_source, monkeypatch):
    from huggingface_hub import constants

    fake = FakeHub(hf_cache, depth_source)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", fake.model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    return fake


def _locked(path=None) -> dict:
    return json.loads(lock_path(path).read_text())["models"]


def test_download_locks_the_commit_it_fetched(hub, capsys):
    assert main(["models", "download", "--role", "depth"]) == 0
    assert _locked() == {DEPTH.repo_id: {"revision": "main", "commit": COMMIT}}
    [(repo, revision, files)] = hub.fetched
    assert (repo, revision) == (DEPTH.repo_id, "main") and "model.safetensors" in files
    out = capsys.readouterr().out
    assert f"depth: downloaded" in out and f"main locked at {COMMIT}" in out and str(lock_path()) in out
    assert [p.name for p in lock_path().parent.iterdir() if "lock" in p.name] == ["models.lock.json"]  # no temp left


def test_the_lock_holds_when_main_moves_until_update(hub, capsys):
    assert main(["models", "download", "--role", "depth"]) == 0
    hub.head = OTHER_COMMIT  # upstream pushes new weights
    assert main(["models", "download", "--role", "depth"]) == 0
    assert "already cached" in capsys.readouterr().out
    assert len(hub.fetched) == 1 and _locked()[DEPTH.repo_id]["commit"] == COMMIT
    assert main(["models", "download", "--role", "depth", "--update"]) == 0
    assert hub.fetched[-1][:2] == (DEPTH.repo_id, "main")
    assert _locked()[DEPTH.repo_id]["commit"] == OTHER_COMMIT


def test_a_copied_lock_makes_another_machine_fetch_the_locked_commit(hub, tmp_path):
    copied = tmp_path / "from-machine-a.lock.json"
    ModelLock(copied).record(DEPTH.repo_id, "main", COMMIT)
    hub.head = OTHER_COMMIT  # main has moved on since machine A downloaded
    assert main(["models", "download", "--role", "depth", "--lock", str(copied)]) == 0
    assert hub.fetched == [(DEPTH.repo_id, COMMIT, hub.fetched[0][2])]
    assert cached_snapshot(DEPTH, ModelLock.load(copied)).name == COMMIT
    assert _locked(copied)[DEPTH.repo_id]["commit"] == COMMIT


def test_loading_uses_the_locked_commit_even_when_refs_main_points_elsewhere(hf_cache, depth_source, tmp_path):
    locked = put_in_hf_cache(hf_cache, DEPTH.repo_id, depth_source, commit=COMMIT, ref=None)
    broken = tmp_path / "broken"
    shutil.copytree(depth_source, broken)
    (broken / "config.json").write_text("{not json")
    newer = put_in_hf_cache(hf_cache, DEPTH.repo_id, broken, commit=OTHER_COMMIT, ref="main")
    assert ModelRegistry(ModelSettings(preset="full", device="cpu")).folder(DEPTH) == newer  # no lock: main

    ModelLock.load().record(DEPTH.repo_id, "main", COMMIT)
    registry = ModelRegistry(ModelSettings(preset="full", device="cpu"))
    assert registry.folder(DEPTH) == locked
    depth = registry.get(records.DEPTH)  # the snapshot at main would not even parse
    assert depth.predict(torch.rand(1, 3, 40, 40)).shape == (1, 40, 40)


@pytest.fixture
def lock_elsewhere(hf_cache, depth_source):
    """main is cached at COMMIT, the lock says OTHER_COMMIT (not cached)."""
    put_in_hf_cache(hf_cache, DEPTH.repo_id, depth_source, commit=COMMIT, ref="main")
    ModelLock.load().record(DEPTH.repo_id, "main", OTHER_COMMIT)


def test_a_locked_commit_that_is_not_cached_is_a_clear_error(lock_elsewhere, monkeypatch):
    registry = ModelRegistry(ModelSettings(preset="full", device="cpu"))
    with pytest.raises(ModelUnavailableError) as error:
        registry.get(records.DEPTH)
    message = str(error.value)
    assert f"locked to commit {OTHER_COMMIT}" in message and str(lock_path()) in message
    assert f"the cache has {COMMIT}" in message and "models download" in message and "offline" in message
    monkeypatch.setattr(registry_module, "required_specs", lambda: [DEPTH])
    with pytest.raises(ModelUnavailableError, match="depth-anything"):  # auto does not count it as cached
        ModelRegistry(ModelSettings(preset="auto", device="cpu"))


def test_verify_and_list_report_a_lock_mismatch(lock_elsewhere, capsys):
    assert main(["models", "verify", "--role", "depth"]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("depth"))
    assert "BAD" in row and "lock mismatch" in row and COMMIT[:12] in row and f"{OTHER_COMMIT[:12]} (locked)" in row
    assert main(["models", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("depth"))
    assert "MISMATCH" in row and f"{OTHER_COMMIT[:12]} (locked)" in row


def test_verify_passes_on_the_locked_commit(lock_elsewhere, capsys):
    ModelLock.load().record(DEPTH.repo_id, "main", COMMIT)
    assert main(["models", "verify", "--role", "depth"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("depth"))
    assert f"{COMMIT[:12]} (locked)" in row and "ok" in row and "loaded in" in row


def test_a_snapshot_downloaded_with_patterns_counts_as_cached(hf_cache, depth_source):
    # huggingface_hub >= 1.x caches the repository's full file listing next to the snapshot; its own
    # offline lookup then rejects a snapshot that holds only the files Lift3D selected.
    folder = put_in_hf_cache(hf_cache, DEPTH.repo_id, depth_source)
    trees = repo_folder(hf_cache, DEPTH.repo_id) / "trees"
    trees.mkdir()
    listing = {str(p.relative_to(depth_source)): {"size": p.stat().st_size, "blob_id": "0" * 40}
               for p in depth_source.rglob("*") if p.is_file()}
    listing["pytorch_model.bin"] = {"size": 10, "blob_id": "1" * 40}  # not selected, not downloaded
    (trees / f"{COMMIT}.json").write_text(json.dumps({"format_version": 1, "files": listing}))
    assert cached_snapshot(DEPTH) == folder


def test_the_lock_file_is_merged_validated_and_scoped_to_the_revision(tmp_path, tiny_registry):
    path = tmp_path / "lock.json"
    first, second = ModelLock.load(path), ModelLock.load(path)
    first.record("a/one", "main", COMMIT)
    second.record("b/two", "v2", OTHER_COMMIT)  # another process, read before the first wrote
    lock = ModelLock.load(path)
    assert lock.commit("a/one", "main") == COMMIT and lock.commit("b/two", "v2") == OTHER_COMMIT
    assert lock.commit("b/two", "main") is None  # a stale entry (the catalogue asks for another revision)
    with pytest.raises(ValueError, match="not a commit"):
        lock.record("a/one", "main", "main")
    path.write_text("{broken")
    with pytest.raises(LockFileError, match=str(path)):
        ModelLock.load(path)
    assert main(["models", "list", "--lock", str(path)]) == 2
    assert tiny_registry.lock is None  # tiny models are not locked
