"""The built zip installs through Blender's own extension installer and survives disable/enable.

Runs in a subprocess because installing an extension changes Blender's preferences, sys.path
and the shared `.local` site-packages; BLENDER_USER_RESOURCES points all of that at tmp_path,
so the developer's ~/.config/blender is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

import build_addon

pytestmark = pytest.mark.blender

MODULE = "bl_ext.user_default.lift3d"

# Runs inside the subprocess; argv[1] is the zip. Prints one JSON line of facts for the test.
SCRIPT = r"""
import importlib, importlib.abc, importlib.machinery, json, os, sys

USER = os.environ["BLENDER_USER_RESOURCES"]
MODULE = "bl_ext.user_default.lift3d"


class OnlyBundled(importlib.abc.MetaPathFinder):
    # The test's own environment has zmq and msgpack too (and earlier on sys.path than the
    # extension's .local site-packages): hide them, so the imports below prove the wheels
    # Blender installed from the zip are what the add-on gets.
    def find_spec(self, name, path=None, target=None):
        if name not in ("zmq", "msgpack"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if p.startswith(USER)])
        if spec is None:
            raise ModuleNotFoundError(f"{name} was not installed under {USER}", name=name)
        return spec


assert "zmq" not in sys.modules and "msgpack" not in sys.modules
sys.meta_path.insert(0, OnlyBundled())

import bpy  # first: it puts Blender's script modules (addon_utils) on sys.path
import addon_utils


def fail(exc):
    raise exc


def state():
    return {"check": list(addon_utils.check(MODULE)), "in_prefs": MODULE in bpy.context.preferences.addons,
            "ops": sorted(dir(bpy.ops.lift3d))}


facts = {}
facts["install"] = sorted(bpy.ops.extensions.package_install_files(
    filepath=sys.argv[1], repo="user_default", enable_on_install=True))
facts["installed"] = state()
import zmq, msgpack
wire = importlib.import_module(MODULE + ".core.wire")
client = importlib.import_module(MODULE + ".vendor.protocol.client")
facts["files"] = {"zmq": zmq.__file__, "msgpack": msgpack.__file__, "protocol": wire.protocol.__file__,
                  "client": client.__file__}
facts["zmq_version"] = zmq.zmq_version()
facts["roundtrip"] = msgpack.unpackb(msgpack.packb({"a": [1, 2]}))
addon_utils.disable(MODULE, default_set=True, handle_error=fail)
facts["disabled"] = state()
addon_utils.enable(MODULE, default_set=True, handle_error=fail)
facts["enabled"] = state()
print("FACTS " + json.dumps(facts))
"""


@pytest.fixture(scope="session")
def linux_cp311_wheels() -> Path:
    """pyzmq + msgpack for linux-x64 / Python 3.11: the repo's wheel cache, filled once if needed."""
    try:
        # Downloads only what the cache lacks, so a filled cache means no network at all.
        build_addon.download_wheels(build_addon.WHEEL_CACHE, ["linux-x64"], ["3.11"],
                                    pip_args=("--retries", "0", "--timeout", "15"))
    except build_addon.WheelError as exc:
        pytest.skip(f"no pyzmq/msgpack wheels in {build_addon.WHEEL_CACHE} and pip download failed "
                    f"(offline?): {exc}")
    return build_addon.WHEEL_CACHE


@pytest.mark.skipif(sysconfig.get_platform() != "linux-x86_64" or sys.version_info[:2] != (3, 11),
                    reason="installs the linux-x64 / Python 3.11 wheels")
def test_zip_installs_enables_and_reenables(tmp_path, linux_cp311_wheels, capsys):
    start = time.perf_counter()
    argv = ["--out", str(tmp_path / "dist"), "--wheels-dir", str(linux_cp311_wheels),
            "--platforms", "linux-x64", "--python-versions", "3.11", "--validate"]
    assert build_addon.main(argv) == 0, capsys.readouterr().err
    built = time.perf_counter()

    user = tmp_path / "user"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "dist" / "lift3d-0.1.0.zip")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    installed = time.perf_counter()
    print(f"build+validate {built - start:.2f} s, install+checks subprocess {installed - built:.2f} s")
    lines = [line for line in result.stdout.splitlines() if line.startswith("FACTS ")]
    assert result.returncode == 0 and lines, result.stdout + result.stderr
    facts = json.loads(lines[-1][len("FACTS "):])

    assert facts["install"] == ["FINISHED"]
    assert facts["installed"]["check"] == [True, True] and facts["installed"]["in_prefs"]
    site = user / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    extension = user / "extensions" / "user_default" / "lift3d"
    assert Path(facts["files"]["zmq"]).is_relative_to(site)
    assert Path(facts["files"]["msgpack"]).is_relative_to(site)
    # The add-on must use its vendored protocol, not a development checkout's.
    assert Path(facts["files"]["protocol"]).is_relative_to(extension / "vendor" / "protocol")
    assert Path(facts["files"]["client"]).is_relative_to(extension / "vendor" / "protocol")
    assert facts["roundtrip"] == {"a": [1, 2]}

    assert facts["disabled"]["check"] == [False, False] and not facts["disabled"]["in_prefs"]
    assert facts["enabled"] == facts["installed"]
    # Operators (lift3d.generate, ...) go away with the add-on and come back with it.
    if "generate" in facts["installed"]["ops"]:
        assert facts["disabled"]["ops"] == []
        assert "generate" in facts["enabled"]["ops"]
