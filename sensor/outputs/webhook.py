"""Webhook output: each alert as a JSON POST, signed, with its alert id as the idempotency key.

Headers sent:

* ``Content-Type: application/json``;
* ``Idempotency-Key: <alert id>`` - the same alert is always sent with the same key, so a receiver
  that keeps the keys it accepted turns at-least-once delivery into exactly-once processing;
* ``X-Zonewarden-Timestamp: <unix seconds>`` and
  ``X-Zonewarden-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`` when a
  secret is configured - binding the timestamp lets a receiver refuse replays of old requests.

Redirects are never followed (a redirect could lead to a host the allowlist refused, A14). The
outcome of one POST is :data:`OK`, :data:`RETRY` (network error, timeout, 408, 425, 429, 5xx) or
:data:`REJECTED` (3xx, any other 4xx: sending again would not help).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

OK = "ok"
RETRY = "retry"
REJECTED = "rejected"
_RETRY_STATUSES = frozenset({408, 425, 429})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSink:
    def __init__(self, name: str, url: str, secret: str | None = None, timeout: float = 5.0) -> None:
        self.name = name
        self.url = url
        self.secret = secret.encode() if secret else None
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def post(self, record: dict[str, Any], alert_id: str) -> tuple[str, str]:
        """POST one alert; returns (outcome, detail)."""
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": alert_id,
            "User-Agent": "zonewarden",
        }
        if self.secret is not None:
            stamp = str(int(time.time()))
            headers["X-Zonewarden-Timestamp"] = stamp
            headers["X-Zonewarden-Signature"] = sign(self.secret, stamp, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
            exc.close()
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
            return RETRY, str(exc)
        if 200 <= status < 300 or status == 409:  # 409: the receiver already has this key
            return OK, str(status)
        if status in _RETRY_STATUSES or status >= 500:
            return RETRY, f"HTTP {status}"
        return REJECTED, f"HTTP {status}"

    def close(self) -> None:
        """Nothing held open between requests."""
