"""Loopback by default; CURVE encryption and client authentication for remote use."""

from __future__ import annotations

import contextlib

import pytest

from backend.serving.config import ServerConfig
from backend.device import DeviceInfo
from backend.serving.security import SecurityError, check_bind_policy, generate_keys, is_local_endpoint
from backend.serving.server import Server
from protocol.client import Client, CurveKeys
from tests.support import PNG, collect, running_server, stepping_pipeline


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5571", True), ("tcp://127.8.9.1:1", True), ("tcp://localhost:5571", True),
    ("tcp://[::1]:5571", True), ("ipc:///tmp/lift3d", True), ("inproc://x", True),
    ("tcp://0.0.0.0:5571", False), ("tcp://*:5571", False), ("tcp://192.168.1.20:5571", False),
    ("tcp://eth0:5571", False), ("tcp://[::]:5571", False),
])
def test_local_endpoints_are_recognised(endpoint, local):
    assert is_local_endpoint(endpoint) is local


def test_non_loopback_bind_needs_keys_or_insecure(tmp_path):
    with pytest.raises(SecurityError, match="--keys DIR"):
        check_bind_policy("tcp://0.0.0.0:5571", None, insecure=False)
    check_bind_policy("tcp://0.0.0.0:5571", None, insecure=True)
    check_bind_policy("tcp://0.0.0.0:5571", tmp_path, insecure=False)
    with pytest.raises(SecurityError):
        Server(ServerConfig(bind="tcp://0.0.0.0:0"), stepping_pipeline(), device=DeviceInfo("cpu"))


def test_key_generation_layout_and_refusals(tmp_path):
    created = generate_keys(tmp_path, ["client", "laptop"])
    names = sorted(p.relative_to(tmp_path).as_posix() for p in created)
    assert names == ["authorized_clients/client.key", "authorized_clients/laptop.key", "clients/client.key",
                     "clients/client.key_secret", "clients/laptop.key", "clients/laptop.key_secret",
                     "server/server.key", "server/server.key_secret"]
    assert (tmp_path / "server" / "server.key_secret").stat().st_mode & 0o077 == 0
    with pytest.raises(SecurityError, match="already exists"):
        generate_keys(tmp_path, ["laptop"])
    with pytest.raises(SecurityError, match="letters, digits"):
        generate_keys(tmp_path, ["../evil"])
    # A second call keeps the existing server key (clients already trust it).
    before = (tmp_path / "server" / "server.key").read_bytes()
    generate_keys(tmp_path, ["desk"])
    assert (tmp_path / "server" / "server.key").read_bytes() == before


def test_curve_admits_known_clients_and_gives_unknown_ones_no_service(tmp_path):
    keys = tmp_path / "keys"
    generate_keys(keys, ["client"])
    strangers = tmp_path / "strangers"
    generate_keys(strangers, ["client"])
    impostor = CurveKeys.from_files(strangers / "clients" / "client.key_secret", keys / "server" / "server.key")

    with running_server(stepping_pipeline(steps=2, step_s=0.0), keys_dir=keys) as server:
        with Client(server.endpoint, keys=CurveKeys.from_dir(keys)) as trusted:
            welcome = trusted.handshake(5)
            got = collect(trusted, trusted.submit(PNG, "x", quality="draft", seed=1))
        with Client(server.endpoint, keys=impostor) as unknown:
            with pytest.raises(TimeoutError):
                unknown.handshake(1.5)
            # After the refused handshake there may be no connection left to queue on at all.
            with contextlib.suppress(ConnectionError):
                unknown.submit(PNG, "x", quality="draft", seed=2)
            assert unknown.poll(500, wait=True) == []
        with Client(server.endpoint) as plaintext:
            with pytest.raises(TimeoutError):
                plaintext.handshake(1.0)
        # Neither the impostor nor the plaintext client ever became known to the server.
        assert len(server._clients) <= 1
    assert welcome.protocol == "2.5"
    assert got[-1].type == "mesh"


def test_curve_server_without_client_keys_refuses_to_start(tmp_path):
    generate_keys(tmp_path, [])
    with pytest.raises(SecurityError, match="no client keys"):
        Server(ServerConfig(bind="tcp://127.0.0.1:*", keys_dir=tmp_path), stepping_pipeline(),
               device=DeviceInfo("cpu")).bind()
