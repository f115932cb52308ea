from __future__ import annotations


class TrustRefusal(Exception):
    """A battle refused by the trust checks: ``message`` for the voter, a ``code`` and an HTTP-like ``status``."""

    def __init__(self, message: str, *, code: str, status: int):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
