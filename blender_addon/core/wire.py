"""Where the add-on finds the Lift3D wire protocol and its shared contracts.

The installed extension carries a vendored copy (`build_addon.py` puts it in `vendor/`); a
development checkout uses the top-level `protocol` package. Everything else in the add-on imports
the protocol from here, so the two layouts never leak into other modules.
"""

from __future__ import annotations

try:
    from ..vendor import protocol
    from ..vendor.protocol import client, endpoints, kinds, options
except ImportError:  # a development checkout: blender_addon/ next to protocol/
    import protocol
    from protocol import client, endpoints, kinds, options

Client = client.Client
CurveKeys = client.CurveKeys
ConnectionState = client.ConnectionState
Health = client.Health
ProtocolError = protocol.ProtocolError
DEFAULT_ADDRESS = protocol.DEFAULT_ADDRESS
image_format = protocol.image_format
is_local_endpoint = endpoints.is_local_endpoint
RequestKind = kinds.RequestKind
Stage = kinds.Stage

__all__ = ["Client", "ConnectionState", "CurveKeys", "DEFAULT_ADDRESS", "Health", "ProtocolError", "RequestKind",
           "Stage", "client", "image_format", "is_local_endpoint", "kinds", "options", "protocol"]
