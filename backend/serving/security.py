"""Bind-address policy and CURVE keys.

Key folder layout (made by `python -m backend keys generate DIR`):

    DIR/server/server.key            server public key   (give to clients)
    DIR/server/server.key_secret     server key pair     (stays on the backend machine)
    DIR/clients/NAME.key_secret      a client key pair   (give to that artist's Blender)
    DIR/authorized_clients/NAME.key  public keys the server accepts
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from protocol import endpoints as protocol_endpoints

SERVER_DIR, CLIENTS_DIR, AUTHORIZED_DIR = "server", "clients", "authorized_clients"


class SecurityError(Exception):
    pass


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and TCP endpoints bound to a loopback address."""
    try:
        return protocol_endpoints.is_local_endpoint(endpoint)
    except ValueError as exc:
        raise SecurityError(str(exc)) from exc


def check_bind_policy(endpoint: str, keys_dir: Path | None, insecure: bool) -> None:
    if keys_dir is None and not insecure and not is_local_endpoint(endpoint):
        raise SecurityError(
            f"refusing to bind {endpoint} without encryption: anyone who can reach it could use this GPU. "
            "Create keys with `python -m backend keys generate DIR` and pass --keys DIR, "
            "or pass --insecure on a trusted network."
        )


def generate_keys(keys_dir: Path, client_names: list[str]) -> list[Path]:
    """Create the server key pair (once) and one key pair per client name; returns created files."""
    keys_dir = Path(keys_dir)
    created: list[Path] = []
    for sub in (SERVER_DIR, CLIENTS_DIR, AUTHORIZED_DIR):
        (keys_dir / sub).mkdir(parents=True, exist_ok=True)
    if not (keys_dir / SERVER_DIR / "server.key_secret").exists():
        public, secret = zmq.auth.create_certificates(keys_dir / SERVER_DIR, "server")
        created += [Path(public), Path(secret)]
    for name in client_names:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise SecurityError(f"client name {name!r}: use letters, digits, '-' and '_'")
        if (keys_dir / CLIENTS_DIR / f"{name}.key_secret").exists():
            raise SecurityError(f"a client named {name!r} already exists in {keys_dir / CLIENTS_DIR}")
        public, secret = zmq.auth.create_certificates(keys_dir / CLIENTS_DIR, name)
        authorized = keys_dir / AUTHORIZED_DIR / f"{name}.key"
        shutil.copyfile(public, authorized)
        created += [Path(public), Path(secret), authorized]
    for path in created:
        if path.name.endswith(".key_secret"):
            os.chmod(path, 0o600)
    return created


def load_server_keys(keys_dir: Path) -> tuple[bytes, bytes]:
    secret_file = Path(keys_dir) / SERVER_DIR / "server.key_secret"
    if not secret_file.is_file():
        raise SecurityError(f"{secret_file} not found; run `python -m backend keys generate {keys_dir}` first")
    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None:
        raise SecurityError(f"{secret_file} holds no secret key")
    return public, secret


def enable_curve_server(ctx: zmq.Context, socket: zmq.Socket, keys_dir: Path) -> ThreadAuthenticator:
    """Make `socket` a CURVE server that only admits the public keys in authorized_clients/.

    Returns the running authenticator; stop it when the socket is closed.
    """
    public, secret = load_server_keys(keys_dir)
    authorized = Path(keys_dir) / AUTHORIZED_DIR
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise SecurityError(f"no client keys in {authorized}; add one with "
                            f"`python -m backend keys generate {keys_dir} --client NAME`")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(authorized))
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return auth
