"""API keys (SPEC: Auth): `Authorization: Bearer <key>`; admin keys are valid everywhere.

With no keys configured, routes are open (the gateway then warns and binds 127.0.0.1).
The fleet page also takes the key from the `rpcfleet_key` cookie its sign-in form sets, since a
browser cannot add a bearer header to a page load.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from fastapi import Request

from gateway.errors import Forbidden, Unauthorized
from gateway.settings import GatewaySettings

UI_COOKIE = "rpcfleet_key"


def bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def _matches(candidate: str, keys: list[str]) -> bool:
    # Compare against every key, in constant time each: no early exit reveals which matched.
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate.encode(), key.encode())
    return found


@dataclass(frozen=True)
class Caller:
    """Who is asking: `owner` fingerprints the key (never the key itself) and owns the jobs it
    submits (SPEC 1.1: who sees a job); an admin sees every job. Without keys: nobody is
    anybody, every job is everyone's."""

    owner: str | None
    admin: bool

    @property
    def restricted(self) -> bool:
        """Sees only the jobs its key submitted (a caller key, with keys in use)."""
        return not self.admin and self.owner is not None


TOKEN_TTL_S = 60  # a WebSocket token only has to last until the socket opens


def fingerprint(key: str) -> str:
    return hashlib.sha256(b"rpcfleet-owner\0" + key.encode()).hexdigest()[:32]


class Auth:
    def __init__(self, settings: GatewaySettings) -> None:
        self.api_keys = list(settings.api_keys)
        self.admin_keys = list(settings.admin_keys)

    @property
    def open(self) -> bool:
        return not self.api_keys and not self.admin_keys

    @staticmethod
    def _presented(request: Request, cookie: bool = False) -> str | None:
        key = bearer(request.headers.get("authorization"))
        if key is None and cookie:
            return request.cookies.get(UI_COOKIE)
        return key

    def check_caller(self, request: Request) -> Caller:
        return self.caller_for_key(self._presented(request))

    def caller_for_key(self, key: str | None) -> Caller:
        """Who a bearer key (or none) stands for; raises like `check_caller_key`."""
        self.check_caller_key(key)
        if self.open or key is None:
            return Caller(owner=None, admin=True)
        return Caller(owner=fingerprint(key), admin=_matches(key, self.admin_keys))

    def check_caller_key(self, key: str | None) -> None:
        if not self.api_keys and not self.admin_keys:
            return
        if key is None:
            raise Unauthorized("an API key is required: Authorization: Bearer <key>")
        if not (_matches(key, self.api_keys) or _matches(key, self.admin_keys)):
            raise Unauthorized("unknown API key")

    def _token_key(self) -> bytes:
        # Derived from the keys themselves: every gateway process and host with the same keys
        # issues and accepts the same tokens, and a changed key list voids them.
        keys = "\n".join(sorted([*self.api_keys, *self.admin_keys]))
        return hashlib.sha256(b"rpcfleet-token\0" + keys.encode()).digest()

    def issue_token(self, caller: Caller, now: float | None = None) -> str:
        """A short-lived token standing for `caller`, for a browser's WebSocket (which cannot
        send an Authorization header; a cookie would reopen cross-site request forgery)."""
        expires = int((now if now is not None else time.time()) + TOKEN_TTL_S)
        claims = f"{expires}.{caller.owner or '-'}.{int(caller.admin)}"
        signature = hmac.new(self._token_key(), claims.encode(), hashlib.sha256).hexdigest()
        return f"{claims}.{signature}"

    def caller_from_token(self, token: str, now: float | None = None) -> Caller:
        try:
            expires, owner, admin, signature = token.split(".")
        except ValueError:
            raise Unauthorized("malformed token") from None
        claims = f"{expires}.{owner}.{admin}"
        expected = hmac.new(self._token_key(), claims.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            raise Unauthorized("unknown token")
        if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
            raise Unauthorized("the token expired: fetch a new one")
        return Caller(owner=None if owner == "-" else owner, admin=admin == "1")

    def check_admin(self, request: Request, cookie: bool = False) -> None:
        if not self.admin_keys:  # admin routes are as open as the rest (the page's cookie too)
            self.caller_for_key(self._presented(request, cookie))
            return
        key = self._presented(request, cookie)
        if key is None:
            raise Unauthorized("an admin key is required: Authorization: Bearer <key>")
        if _matches(key, self.admin_keys):
            return
        if _matches(key, self.api_keys):
            raise Forbidden("this key may call methods but not administer the fleet")
        raise Unauthorized("unknown API key")
