"""Schemathesis hooks for the zonewarden API run (loaded through SCHEMATHESIS_HOOKS).

EST bodies are ``application/pkcs10``: base64 text, which schemathesis cannot serialise on its own.
Whatever string it generates is sent as its UTF-8 bytes, so the server sees arbitrary "base64".
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.serializer("application/pkcs10")
def pkcs10_text(ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")
