"""PKI errors: each refusal has a stable snake_case ``code`` and the HTTP status the API will map it to.

They are :class:`sensor.errors.UserError`, so the CLI prints them on one line and exits non-zero.
"""

from __future__ import annotations

from sensor.errors import UserError


class PkiError(UserError):
    """A PKI operation refused or failed for a reason the operator can act on."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"


class RequestRefused(PkiError):
    """A certificate request (CSR, subject, SANs, key) that the CA will not sign."""

    status = 400


class NotFound(PkiError):
    """No such certificate (or CA) in this PKI."""

    status = 404


class Conflict(PkiError):
    """The request contradicts the current state (already revoked, already initialised)."""

    status = 409


class Unprocessable(PkiError):
    """The request is well-formed but its value can never be valid (negative or oversized serial)."""

    status = 422


class CaUnavailable(PkiError):
    """The CA cannot be loaded: missing files, wrong or missing passphrase, unsafe permissions."""

    status = 500
