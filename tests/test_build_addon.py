"""build_addon.py: wheel selection, staging and the zip, on fake wheel files (no network).

Only the test marked `blender` runs Blender's own extension CLI (from the bpy module).
"""

import shutil
import tomllib
import zipfile
from pathlib import Path

import pytest

import build_addon
from build_addon import parse_wheel, select_wheels, serves

ALL_PLATFORMS = list(build_addon.PIP_PLATFORMS)
# What pip downloads for the pinned versions (PyPI file names, 2 packages x 4 platforms x 2 Pythons).
Z, M = f"pyzmq-{build_addon.PINS['pyzmq']}", f"msgpack-{build_addon.PINS['msgpack']}"
REAL = [
    f"{Z}-cp311-cp311-win_amd64.whl",
    f"{Z}-cp312-abi3-win_amd64.whl",
    f"{Z}-cp311-cp311-macosx_10_15_universal2.whl",
    f"{Z}-cp312-abi3-macosx_10_15_universal2.whl",
    f"{Z}-cp311-cp311-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl",
    f"{Z}-cp312-abi3-manylinux_2_26_x86_64.manylinux_2_28_x86_64.whl",
    f"{M}-cp311-cp311-win_amd64.whl",
    f"{M}-cp313-cp313-win_amd64.whl",
    f"{M}-cp311-cp311-macosx_11_0_arm64.whl",
    f"{M}-cp311-cp311-macosx_10_9_x86_64.whl",
    f"{M}-cp313-cp313-macosx_11_0_arm64.whl",
    f"{M}-cp313-cp313-macosx_10_13_x86_64.whl",
    f"{M}-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
    f"{M}-cp313-cp313-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
]
# Files a shared cache may also hold; none may be picked.
NOISE = [
    "pyzmq-26.0.0-cp311-cp311-win_amd64.whl",  # not the pinned version
    f"{M}-cp311-cp311-musllinux_1_2_x86_64.whl",  # Blender only takes manylinux on Linux
    f"{M}-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
    f"{M}-cp310-cp310-win_amd64.whl",
    f"{M}-cp312-cp312-win_amd64.whl",  # no stable ABI: does not serve 3.13
    f"{M}.tar.gz",
    "README.txt",
]


def w(name: str):
    parsed = parse_wheel(name)
    assert parsed is not None
    return parsed


def test_wheel_names_are_parsed_with_compressed_tags_and_build_numbers():
    wheel = w(REAL[4])
    assert (wheel.name, wheel.python_tag, wheel.abi_tag) == ("pyzmq", "cp311", "cp311")
    assert wheel.version == build_addon.PINS["pyzmq"]
    assert wheel.platform_tag == "manylinux_2_26_x86_64.manylinux_2_28_x86_64"
    assert w("Foo.Bar-1.0-1b-py3-none-any.whl").name == "foo_bar"
    assert parse_wheel("msgpack-1.2.4.tar.gz") is None and parse_wheel("bad-name.whl") is None


@pytest.mark.parametrize(("name", "served"), [
    # universal2 serves both Macs, a thin build only its own architecture.
    ("x-1-cp311-cp311-macosx_10_15_universal2.whl", {("macos-arm64", "3.11"), ("macos-x64", "3.11")}),
    ("x-1-cp311-cp311-macosx_11_0_arm64.whl", {("macos-arm64", "3.11")}),
    ("x-1-cp313-cp313-macosx_10_13_x86_64.whl", {("macos-x64", "3.13")}),
    # A stable-ABI wheel serves its own and later Pythons, never earlier ones.
    ("x-1-cp312-abi3-win_amd64.whl", {("windows-x64", "3.13")}),
    ("x-1-cp311-abi3-win_amd64.whl", {("windows-x64", "3.11"), ("windows-x64", "3.13")}),
    # manylinux, whatever glibc or compressed set; musllinux and other architectures never.
    ("x-1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
     {("linux-x64", "3.11")}),
    ("x-1-cp313-cp313-manylinux_2_34_x86_64.whl", {("linux-x64", "3.13")}),
    ("x-1-cp311-cp311-musllinux_1_2_x86_64.whl", set()),
    ("x-1-cp311-cp311-manylinux_2_17_aarch64.whl", set()),
    ("x-1-cp311-cp311-win32.whl", set()),
    ("x-1-cp310-cp310-win_amd64.whl", set()),
    ("x-1-py3-none-any.whl", {(p, v) for p in ALL_PLATFORMS for v in ("3.11", "3.13")}),
])
def test_serves_matches_blenders_install_filter(name, served):
    assert {(p, v) for p in ALL_PLATFORMS for v in ("3.11", "3.13") if serves(w(name), p, v)} == served


def test_the_pinned_pypi_wheels_cover_every_combo_once():
    chosen = select_wheels(REAL + NOISE, ALL_PLATFORMS, ["3.11", "3.13"])
    assert chosen == sorted(REAL)
    picks, missing = build_addon.plan_wheels(chosen, ALL_PLATFORMS, ["3.11", "3.13"])
    assert not missing and len(picks) == 2 * 4 * 2
    # pyzmq's universal2 and abi3 wheels each serve several combos: 6 files for 8 combos.
    assert len({f for c, f in picks.items() if c.package == "pyzmq"}) == 6


def test_universal2_is_preferred_so_both_macs_share_one_file():
    thin_and_fat = [f"{M}-cp311-cp311-macosx_11_0_arm64.whl", f"{M}-cp311-cp311-macosx_10_9_universal2.whl",
                    f"{M}-cp311-cp311-macosx_10_9_x86_64.whl"]
    chosen = select_wheels(thin_and_fat, ["macos-arm64", "macos-x64"], ["3.11"], pins={"msgpack": "1.2.4"})
    assert chosen == [f"{M}-cp311-cp311-macosx_10_9_universal2.whl"]


def test_exact_python_tag_beats_the_stable_abi():
    names = [f"{Z}-cp312-abi3-win_amd64.whl", f"{Z}-cp313-cp313-win_amd64.whl"]
    assert select_wheels(names, ["windows-x64"], ["3.13"], pins={"pyzmq": "27.3.0"}) == [names[1]]


def test_two_installable_copies_on_one_system_are_refused():
    # Apple Silicon + 3.13 would get both the thin cp313 wheel and the abi3 universal2 one
    # (picked for Intel Macs, which have no thin cp313 wheel).
    names = [f"{Z}-cp313-cp313-macosx_11_0_arm64.whl", f"{Z}-cp312-abi3-macosx_10_15_universal2.whl"]
    with pytest.raises(build_addon.WheelError, match="macos-arm64 / Python 3.13 would install 2 copies"):
        select_wheels(names, ["macos-arm64", "macos-x64"], ["3.13"], pins={"pyzmq": "27.3.0"})


def test_missing_combos_are_all_named():
    names = [n for n in REAL if "win_amd64" not in n or "cp313" not in n]
    with pytest.raises(build_addon.WheelError) as err:
        select_wheels(names, ALL_PLATFORMS, ["3.11", "3.13"])
    assert str(err.value) == "no wheel for: msgpack==1.2.4 on windows-x64 / Python 3.13"
    # Narrowing the platforms drops the requirement.
    assert len(select_wheels(names, ["linux-x64", "macos-arm64"], ["3.11", "3.13"])) == 8


def test_staged_manifest_is_valid_toml_with_the_generated_keys():
    source = (build_addon.ADDON / "blender_manifest.toml").read_text()
    text = build_addon.staged_manifest(source, ["a-1-py3-none-any.whl", "b-2-cp311-cp311-win_amd64.whl"],
                                       ["linux-x64", "windows-x64"])
    manifest, original = tomllib.loads(text), tomllib.loads(source)
    assert manifest["wheels"] == ["./wheels/a-1-py3-none-any.whl", "./wheels/b-2-cp311-cp311-win_amd64.whl"]
    assert manifest["platforms"] == ["linux-x64", "windows-x64"]
    assert {k: v for k, v in manifest.items() if k not in ("wheels", "platforms")} == original
    with pytest.raises(build_addon.WheelError, match="must not set 'platforms'"):
        build_addon.staged_manifest(text, [], [])


@pytest.fixture
def fake_wheels(tmp_path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name in REAL + NOISE:
        (folder / name).write_bytes(b"not really a wheel")
    return folder


@pytest.fixture
def addon_with_dev_files(tmp_path, monkeypatch) -> Path:
    """A copy of blender_addon/ with the files that must never ship (bytecode, the benchmark)."""
    addon = tmp_path / "blender_addon"
    shutil.copytree(build_addon.ADDON, addon, ignore=shutil.ignore_patterns("__pycache__"))
    (addon / "__pycache__").mkdir()
    (addon / "__pycache__" / "jobs.cpython-311.pyc").write_bytes(b"")
    (addon / "stray.pyc").write_bytes(b"")
    (addon / "bench.py").write_text("import backend\n")
    monkeypatch.setattr(build_addon, "ADDON", addon)
    return addon


def test_stage_vendors_protocol_and_leaves_dev_files_out(tmp_path, fake_wheels, addon_with_dev_files):
    wheels = [fake_wheels / REAL[0], fake_wheels / REAL[6]]
    manifest = build_addon.stage(tmp_path / "stage", wheels, ["windows-x64"])
    root = tmp_path / "stage"
    staged = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {"__init__.py", "blender_manifest.toml", "core/wire.py", "vendor/__init__.py", f"wheels/{REAL[0]}",
            f"wheels/{REAL[6]}"} <= staged
    assert {"vendor/protocol/__init__.py", "vendor/protocol/client.py", "vendor/protocol/codec.py"} <= staged
    assert not [n for n in staged if "__pycache__" in n or n.endswith((".pyc", "bench.py"))]
    assert manifest["wheels"] == [f"./wheels/{REAL[0]}", f"./wheels/{REAL[6]}"]
    assert tomllib.loads((tmp_path / "stage" / "blender_manifest.toml").read_text()) == manifest


def test_main_without_bpy_zips_without_validating(tmp_path, fake_wheels, addon_with_dev_files, monkeypatch,
                                                  capsys):
    monkeypatch.setattr(build_addon, "blender_ext_script", lambda: None)
    assert build_addon.main(["--out", str(tmp_path / "dist"), "--wheels-dir", str(fake_wheels)]) == 0
    out, err = capsys.readouterr()
    assert "bpy module is not installed" in err and "NOT validating" in err
    archive = tmp_path / "dist" / "lift3d-0.1.0.zip"
    assert f"wrote {archive}" in out
    names = set(zipfile.ZipFile(archive).namelist())
    assert {f"wheels/{n}" for n in REAL} <= names
    assert {"blender_manifest.toml", "__init__.py", "vendor/protocol/client.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", "bench.py")) or "26.0.0" in n]
    manifest = tomllib.loads(zipfile.ZipFile(archive).read("blender_manifest.toml").decode())
    assert manifest["platforms"] == ALL_PLATFORMS and len(manifest["wheels"]) == len(REAL)


def test_main_refuses_forced_validation_without_bpy(tmp_path, fake_wheels, monkeypatch, capsys):
    monkeypatch.setattr(build_addon, "blender_ext_script", lambda: None)
    assert build_addon.main(["--out", str(tmp_path), "--wheels-dir", str(fake_wheels), "--validate"]) == 1
    assert "--validate needs Blender's extension CLI" in capsys.readouterr().err


def test_main_names_missing_wheels_and_platforms_narrow_the_set(tmp_path, fake_wheels, monkeypatch, capsys):
    monkeypatch.setattr(build_addon, "blender_ext_script", lambda: None)
    for name in REAL:
        if "macosx" in name:
            (fake_wheels / name).unlink()
    assert build_addon.main(["--out", str(tmp_path), "--wheels-dir", str(fake_wheels)]) == 1
    err = capsys.readouterr().err
    assert err.count("on macos-") == 8 and "pyzmq==27.3.0 on macos-arm64 / Python 3.11" in err
    argv = ["--out", str(tmp_path), "--wheels-dir", str(fake_wheels), "--platforms", "linux-x64,windows-x64"]
    assert build_addon.main(argv) == 0
    archive = zipfile.ZipFile(tmp_path / "lift3d-0.1.0.zip")
    manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    assert manifest["platforms"] == ["linux-x64", "windows-x64"] and len(manifest["wheels"]) == 8


def test_unknown_platform_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        build_addon.main(["--platforms", "linux-arm64", "--wheels-dir", "."])
    assert "unknown platform" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_addon.main(["--python-versions", "311", "--wheels-dir", "."])
    assert "versions like 3.11" in capsys.readouterr().err


@pytest.mark.blender
def test_blenders_own_cli_builds_and_validates_the_zip(tmp_path, fake_wheels, capsys):
    assert build_addon.blender_ext_script() is not None
    argv = ["--out", str(tmp_path), "--wheels-dir", str(fake_wheels), "--validate"]
    assert build_addon.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "Success parsing TOML" in out  # blender_ext.py validate
    archive = zipfile.ZipFile(tmp_path / "lift3d-0.1.0.zip")
    names = set(archive.namelist())
    assert {f"wheels/{n}" for n in REAL} | {"blender_manifest.toml", "vendor/protocol/__init__.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith("bench.py")]
