"""Build the installable Blender extension zip: dist/lift3d-VERSION.zip.

    python build_addon.py [--out dist] [--wheels-dir DIR] [--platforms linux-x64,...]
                          [--python-versions 3.11,3.13] [--validate | --no-validate]

Stages blender_addon/ (minus dev-only files) with a vendored copy of protocol/ (the add-on's
only link to the backend), adds the pyzmq and msgpack wheels for every platform x Python
combination Blender may run the add-on under (Blender 4.2-5.0 bundle Python 3.11, 5.1+ bundle
3.13), lists them in the staged manifest, then builds and validates the zip with Blender's own
extension CLI (`blender_ext.py`, shipped inside the PyPI `bpy` wheel, so no Blender binary is
needed).

Wheels are downloaded with pip into .cache/wheels once; later builds reuse them offline.
`--wheels-dir DIR` takes the wheels from DIR instead and never downloads.

Without the `bpy` module the zip is written with zipfile (same flat layout Blender builds) and
validation is skipped with a warning; `--validate` makes that an error instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent
ADDON, PROTOCOL = ROOT / "blender_addon", ROOT / "protocol"
WHEEL_CACHE = ROOT / ".cache" / "wheels"
# bench.py is a developer benchmark that needs trimesh: never ship it.
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "bench.py")

# The one place the bundled versions are pinned. Both publish wheels for every combination
# below (pyzmq as cp311 + a cp312-abi3 wheel that serves 3.13; msgpack as cp311 + cp313), and
# they are the versions the backend's own environment is tested with. All extensions of a
# Blender repository share one site-packages, so stay on common, current releases.
PINS: dict[str, str] = {"pyzmq": "27.3.0", "msgpack": "1.2.4"}
# Blender platform name -> the pip `--platform` tag used to download. pip expands each tag to
# the older/compatible ones (macOS universal2, older manylinux), which Blender accepts too.
# manylinux_2_28: the glibc Blender 4.2+ itself needs; macOS 11: Blender 4.2's minimum.
PIP_PLATFORMS: dict[str, str] = {
    "windows-x64": "win_amd64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_11_0_x86_64",
    "linux-x64": "manylinux_2_28_x86_64",
}
PYTHONS: tuple[str, ...] = ("3.11", "3.13")  # Blender 4.2-5.0, Blender 5.1+


class WheelError(RuntimeError):
    """Wheels are missing, ambiguous, or could not be downloaded."""


class Wheel(NamedTuple):
    filename: str
    name: str  # normalised distribution name (PEP 503 style, with underscores)
    version: str
    python_tag: str  # may be a compressed set such as "py2.py3"
    abi_tag: str
    platform_tag: str  # may be compressed: "manylinux2014_x86_64.manylinux_2_17_x86_64"


class Combo(NamedTuple):
    package: str
    platform: str
    python: str


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def parse_wheel(filename: str) -> Wheel | None:
    """The parts of a wheel filename, or None when it is not a well-formed wheel name."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    if not 5 <= len(parts) <= 6:  # the optional build tag makes it 6
        return None
    return Wheel(filename, _normalise(parts[0]), parts[1], *parts[-3:])


def _platform_ok(tag: str, platform: str) -> bool:
    # Mirrors Blender's install-time filter (bl_extension_ops._extensions_wheel_filter_for_this_system),
    # including matching the *whole* compressed tag rather than its dotted parts: selecting a
    # wheel Blender would then skip would leave the add-on without zmq on that platform.
    if tag == "any":
        return True
    system, _, arch = platform.partition("-")
    machine = {"x64": "x86_64", "arm64": "arm64"}[arch]
    if system == "windows":
        return tag == {"x86_64": "win_amd64", "arm64": "win_arm64"}[machine]
    if system == "linux":  # the glibc version is ignored, as Blender does
        return tag == f"linux_{machine}" or (tag.startswith("manylinux") and tag.endswith(f"_{machine}"))
    if system == "macos":  # the minimum macOS version is ignored, as Blender does
        return tag.startswith("macosx_") and tag.endswith((f"_{machine}", "_universal2"))
    return False


def _python_rank(wheel: Wheel, python: str) -> int | None:
    """How well `wheel` fits CPython `python` ("3.11"): 0 exact, 1 stable ABI, 2 any 3.x, None no."""
    major, minor = (int(p) for p in python.split("."))
    abi3 = "abi3" in wheel.abi_tag.split(".")
    best: int | None = None
    for tag in wheel.python_tag.split("."):
        m = re.fullmatch(r"(?:cp|py)(\d)(\d*)", tag)
        if m is None or int(m[1]) != major:
            continue
        if not m[2]:
            rank = 2
        elif int(m[2]) == minor:
            rank = 0
        elif abi3 and int(m[2]) < minor:  # a stable-ABI wheel serves every later 3.x (Blender agrees)
            rank = 1
        else:
            continue
        best = rank if best is None else min(best, rank)
    return best


def serves(wheel: Wheel, platform: str, python: str) -> bool:
    """Would Blender on `platform` with CPython `python` install this wheel?"""
    return _platform_ok(wheel.platform_tag, platform) and _python_rank(wheel, python) is not None


def _preference(wheel: Wheel, python: str) -> tuple[int, bool, str]:
    """Sort key, best first: Python fit, then multi-architecture files, then the name (stable)."""
    rank = _python_rank(wheel, python)
    single_arch = not wheel.platform_tag.endswith(("universal2", "any"))
    return (3 if rank is None else rank, single_arch, wheel.filename)


def plan_wheels(
    filenames: Iterable[str],
    platforms: Sequence[str],
    pythons: Sequence[str],
    pins: dict[str, str] = PINS,
) -> tuple[dict[Combo, str], list[Combo]]:
    """Pick one wheel per (package, platform, python); return the picks and the combos with none.

    Only the pinned versions count, so stale files in a cache never sneak in. Preference: exact
    CPython tag over stable ABI over generic py3, then universal2/any over single-architecture
    builds, so both macOS combos pick the same file whenever one serves both (fewer files, and
    never two installable copies of one package on the same Mac).
    """
    wheels = [w for w in map(parse_wheel, filenames) if w is not None]
    picks: dict[Combo, str] = {}
    missing: list[Combo] = []
    for package, version in pins.items():
        pinned = [w for w in wheels if w.name == _normalise(package) and w.version == version]
        for platform in platforms:
            for python in pythons:
                fits = [w for w in pinned if serves(w, platform, python)]
                combo = Combo(package, platform, python)
                if not fits:
                    missing.append(combo)
                    continue
                picks[combo] = min(fits, key=lambda w: _preference(w, python)).filename
    return picks, missing


def select_wheels(
    filenames: Iterable[str],
    platforms: Sequence[str],
    pythons: Sequence[str],
    pins: dict[str, str] = PINS,
) -> list[str]:
    """The deduplicated, sorted wheel files the add-on needs; WheelError naming what is missing."""
    picks, missing = plan_wheels(filenames, platforms, pythons, pins)
    if missing:
        raise WheelError("no wheel for: " + ", ".join(
            f"{c.package}=={pins[c.package]} on {c.platform} / Python {c.python}" for c in missing))
    chosen = sorted(set(picks.values()))
    # Blender installs every listed wheel that fits the running system: two for one package on
    # the same combo would install in an undefined order.
    parsed = [w for w in map(parse_wheel, chosen) if w is not None]
    for combo in picks:
        package, platform, python = combo
        clash = [w.filename for w in parsed if w.name == _normalise(package) and serves(w, platform, python)]
        if len(clash) > 1:
            raise WheelError(f"{platform} / Python {python} would install {len(clash)} copies of {package}: "
                             f"{clash}")
    return chosen


def download_wheels(
    dest: Path,
    platforms: Sequence[str],
    pythons: Sequence[str],
    pip_args: Sequence[str] = (),
) -> None:
    """pip-download the pinned wheels for every combo `dest` does not already serve."""
    dest.mkdir(parents=True, exist_ok=True)
    for platform in platforms:
        for python in pythons:
            # Re-planned per combo: a universal2/abi3 wheel fetched for one combo may serve the next.
            _, missing = plan_wheels((p.name for p in dest.glob("*.whl")), [platform], [python])
            if missing:
                specs = sorted(f"{c.package}=={PINS[c.package]}" for c in missing)
                _pip_download(dest, platform, python, specs, pip_args)


def _pip_download(dest: Path, platform: str, python: str, specs: list[str], pip_args: Sequence[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "--no-deps", "--python-version", python,
           "--platform", PIP_PLATFORMS[platform], "--dest", str(dest), *pip_args, *specs]
    print(f"downloading {' '.join(specs)} for {platform} / Python {python}")
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise WheelError(f"pip download failed for {platform} / Python {python} ({' '.join(specs)}):\n"
                         + (result.stderr or result.stdout).strip())


def _toml_list(values: Sequence[str]) -> str:
    # JSON strings of plain ASCII paths are valid TOML basic strings.
    return "[\n" + "".join(f"  {json.dumps(v)},\n" for v in values) + "]"


def staged_manifest(text: str, wheels: Sequence[str], platforms: Sequence[str]) -> str:
    """The source manifest with generated `platforms` and `wheels` keys added.

    Text is edited rather than re-serialised so comments and layout survive; the new keys go
    before the first table, since TOML top-level keys cannot follow a [table].
    """
    source = tomllib.loads(text)
    for key in ("platforms", "wheels"):
        if key in source:
            raise WheelError(f"blender_manifest.toml must not set {key!r}: build_addon.py generates it")
    generated = (f"\n# Generated by build_addon.py.\nplatforms = {_toml_list(platforms)}\n"
                 f"wheels = {_toml_list([f'./wheels/{w}' for w in wheels])}\n")
    m = re.search(r"^\[", text, flags=re.MULTILINE)
    at = m.start() if m else len(text)
    head = text[:at].rstrip("\n") + "\n"
    result = head + generated + ("\n" + text[at:] if m else "")
    parsed = tomllib.loads(result)  # never ship a manifest that does not round-trip
    if parsed["wheels"] != [f"./wheels/{w}" for w in wheels] or parsed["platforms"] != list(platforms):
        raise RuntimeError(f"the generated manifest does not round-trip:\n{result}")
    return result


def stage(dest: Path, wheel_paths: Sequence[Path], platforms: Sequence[str]) -> dict[str, Any]:
    """Lay out the extension source in `dest` (which must not exist); return its manifest."""
    shutil.copytree(ADDON, dest, ignore=IGNORE)
    # The installed add-on imports `from .vendor import protocol` (a dev checkout falls back to
    # the top-level package), so the zip is self-contained.
    shutil.copytree(PROTOCOL, dest / "vendor" / "protocol", ignore=IGNORE)
    (dest / "vendor" / "__init__.py").write_text('"""Code bundled with the add-on."""\n')
    (dest / "wheels").mkdir()
    for path in wheel_paths:
        shutil.copy2(path, dest / "wheels" / path.name)
    source = (ADDON / "blender_manifest.toml").read_text()
    text = staged_manifest(source, [p.name for p in wheel_paths], platforms)
    (dest / "blender_manifest.toml").write_text(text)
    return tomllib.loads(text)


def blender_ext_script() -> Path | None:
    """Blender's extension CLI inside the installed `bpy` wheel (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    return None


def _blender_ext(script: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, str(script), *args], check=False, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise RuntimeError(f"blender_ext.py {args[0]} failed ({result.returncode}):\n{output}")
    return output


def _zip_dir(source: Path, archive: Path) -> None:
    # Same flat layout `blender_ext.py build` writes (manifest at the zip root).
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(source).as_posix())


def build(
    out_dir: Path,
    wheel_paths: Sequence[Path],
    platforms: Sequence[str] = tuple(PIP_PLATFORMS),
    validate: bool | None = None,
) -> Path:
    """Stage and zip the extension into `out_dir`; validate when `validate` (None: if bpy exists)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    script = blender_ext_script()
    if script is None:
        if validate:
            raise RuntimeError("--validate needs Blender's extension CLI from the bpy module "
                               "(pip install bpy==5.0.1)")
        print("warning: the bpy module is not installed: zipping without Blender's build tool and "
              "NOT validating (pip install bpy==5.0.1 to validate)", file=sys.stderr)
    # Staged in a temporary folder so nothing but the zip lands in `out_dir`.
    with tempfile.TemporaryDirectory(prefix="lift3d-stage-") as tmp:
        source = Path(tmp) / "src"
        manifest = stage(source, wheel_paths, platforms)
        archive = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
        archive.unlink(missing_ok=True)
        if script is None:
            _zip_dir(source, archive)
        else:
            print(_blender_ext(script, "build", "--source-dir", str(source), "--output-filepath",
                               str(archive)))
    if script is not None and validate is not False:
        print(_blender_ext(script, "validate", str(archive)))
    elif script is not None:
        print("warning: validation skipped (--no-validate)", file=sys.stderr)
    return archive


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    parser.add_argument("--wheels-dir", type=Path, help="take wheels from here; never download")
    parser.add_argument("--platforms", type=_csv, default=list(PIP_PLATFORMS),
                        help=f"comma-separated Blender platforms (default {','.join(PIP_PLATFORMS)})")
    parser.add_argument("--python-versions", type=_csv, default=list(PYTHONS),
                        help=f"comma-separated Python versions (default {','.join(PYTHONS)})")
    parser.add_argument("--validate", action=argparse.BooleanOptionalAction, default=None,
                        help="validate with Blender's CLI (default: when the bpy module is installed)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.platforms) - set(PIP_PLATFORMS))
    if unknown:
        parser.error(f"unknown platform(s) {unknown}; known: {', '.join(PIP_PLATFORMS)}")
    if not all(re.fullmatch(r"3\.\d+", v) for v in args.python_versions):
        parser.error(f"--python-versions takes versions like 3.11, got {args.python_versions}")
    try:
        wheel_dir = args.wheels_dir or WHEEL_CACHE
        if args.wheels_dir is None:
            download_wheels(WHEEL_CACHE, args.platforms, args.python_versions)
        elif not wheel_dir.is_dir():
            raise WheelError(f"--wheels-dir {wheel_dir} is not a folder")
        names = [p.name for p in wheel_dir.glob("*.whl")]
        chosen = select_wheels(names, args.platforms, args.python_versions)
        archive = build(args.out, [wheel_dir / w for w in chosen], args.platforms, args.validate)
    except (WheelError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"\nwrote {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    picks, _ = plan_wheels(chosen, args.platforms, args.python_versions)
    for platform in args.platforms:
        for python in args.python_versions:
            files = [picks[Combo(p, platform, python)] for p in PINS]
            print(f"  {platform:12} Python {python}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
