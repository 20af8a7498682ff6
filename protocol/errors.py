"""The one exception type of the protocol layer."""


class ProtocolError(ValueError):
    """A message could not be encoded or decoded.

    `code` is machine-readable and travels back to the sender in a `failed` message:
    `bad_message` (shape, type or field errors), `unsupported_version`, `too_large` (a limit).
    """

    def __init__(self, message: str, code: str = "bad_message") -> None:
        super().__init__(message)
        self.code = code
