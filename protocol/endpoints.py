"""ZeroMQ endpoint strings: which ones stay on this machine. Shared by the backend's bind policy
and the add-on (online-access rule, starting a local backend)."""

from __future__ import annotations

import ipaddress
import re


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and TCP endpoints on a loopback address; ValueError when
    `endpoint` is not a ZeroMQ endpoint at all."""
    match = re.fullmatch(r"(\w+)://(.+)", endpoint)
    if not match:
        raise ValueError(f"not a ZeroMQ endpoint: {endpoint!r} (expected e.g. tcp://127.0.0.1:5571)")
    transport, rest = match.groups()
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name or a host name: may be reachable from outside
