"""Where the add-on finds the Lift3D wire protocol.

The installed extension carries a vendored copy (`build_addon.py` puts it in `vendor/`); a
development checkout uses the top-level `protocol` package. Everything else in the add-on imports
the protocol from here, so the two layouts never leak into other modules.
"""

from __future__ import annotations

try:
    from .vendor import protocol
    from .vendor.protocol import client, endpoints
except ImportError:  # a development checkout: blender_addon/ next to protocol/
    import protocol
    from protocol import client, endpoints

Client = client.Client
CurveKeys = client.CurveKeys
ConnectionState = client.ConnectionState
ProtocolError = protocol.ProtocolError
DEFAULT_ADDRESS = protocol.DEFAULT_ADDRESS
image_format = protocol.image_format
is_local_endpoint = endpoints.is_local_endpoint

__all__ = ["Client", "ConnectionState", "CurveKeys", "DEFAULT_ADDRESS", "ProtocolError", "client", "image_format",
           "is_local_endpoint", "protocol"]
