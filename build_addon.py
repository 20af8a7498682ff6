"""Build the installable Blender extension zip: dist/lift3d-VERSION.zip.

Stages blender_addon/ with a vendored copy of protocol/ (the add-on's only link to the
backend) and zips it. Bundling the pyzmq/msgpack wheels per platform and validating with
Blender's own extension tooling arrive with the Blender extension issue.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON, PROTOCOL = ROOT / "blender_addon", ROOT / "protocol"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def build(out_dir: Path) -> Path:
    manifest = tomllib.loads((ADDON / "blender_manifest.toml").read_text())
    stage = out_dir / "stage" / manifest["id"]
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(ADDON, stage, ignore=IGNORE)
    shutil.copytree(PROTOCOL, stage / "vendor" / "protocol", ignore=IGNORE)
    (stage / "vendor" / "__init__.py").write_text('"""Third-party and shared code bundled with the add-on."""\n')
    archive = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(stage.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(stage).as_posix())
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    archive = build(args.out)
    print(f"wrote {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
