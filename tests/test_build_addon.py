import zipfile

import build_addon


def test_zip_holds_the_manifest_the_addon_and_the_vendored_protocol(tmp_path):
    archive = build_addon.build(tmp_path)
    assert archive.name == "lift3d-0.1.0.zip"
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"blender_manifest.toml", "__init__.py", "vendor/__init__.py", "vendor/protocol/__init__.py",
            "vendor/protocol/codec.py", "vendor/protocol/client.py"} <= names
    assert not any("__pycache__" in n for n in names)
