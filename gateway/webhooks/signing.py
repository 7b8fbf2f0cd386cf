"""Standard Webhooks 1.0 signatures: receivers verify with the stock `standardwebhooks` libraries.

signature = base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")), sent as
`webhook-signature: v1,<signature>`; the secret is `whsec_<base64 key>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

PREFIX = "whsec_"


class SecretError(ValueError):
    """RPCFLEET_CALLBACK_SECRET is not a `whsec_<base64>` secret."""


class Signer:
    def __init__(self, secret: str) -> None:
        if not secret.startswith(PREFIX):
            raise SecretError("RPCFLEET_CALLBACK_SECRET must look like whsec_<base64 key>")
        try:
            self._key = base64.b64decode(secret[len(PREFIX):], validate=True)
        except binascii.Error as exc:
            raise SecretError(f"RPCFLEET_CALLBACK_SECRET is not valid base64: {exc}") from None
        if len(self._key) < 16:  # the spec asks for 24 to 64 bytes; refuse the clearly weak
            raise SecretError("RPCFLEET_CALLBACK_SECRET's key must be at least 16 bytes")

    def headers(self, webhook_id: str, body: bytes, job_id: str, attempt: int,
                timestamp: int | None = None) -> dict[str, str]:
        """Headers of one attempt: a fresh timestamp (and so signature) each time."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signed = f"{webhook_id}.{stamp}.".encode() + body
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
            "content-type": "application/json",
            "x-rpcfleet-job-id": job_id,
            "x-rpcfleet-delivery": str(attempt),
        }
