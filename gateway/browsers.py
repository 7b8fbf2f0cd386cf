"""A keyless gateway must not be drivable by a web page its operator visits (CSRF, DNS
rebinding). Without API keys every route is open to whoever can reach the port, and a browser on
the operator's machine can: a page elsewhere may POST to http://127.0.0.1:8000 (cross-origin
requests without a preflight still reach the server), or point a name it controls at 127.0.0.1
(DNS rebinding) and then read the answers as same-origin.

So, while no keys are set, this ASGI middleware answers 403 `forbidden` to
- a request whose `Host` is not an allowed host (rebinding: the browser sends the attacker's
  name), allowed being localhost, 127.0.0.1, [::1] and the bind address unless
  `RPCFLEET_ALLOWED_HOSTS` says otherwise;
- a browser request from another origin: an `Origin` other than the gateway's own (scheme + the
  checked Host) or one of `RPCFLEET_ALLOWED_ORIGINS`, or `Sec-Fetch-Site: cross-site`.
Server-side clients and curl send no `Origin` and keep working. With keys set, the keys guard
the routes (a page elsewhere does not have them) and this check stands aside.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import Forbidden
from gateway.responses import send_close, send_error

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")


class BrowserGuard:
    def __init__(self, app: ASGIApp, *, enabled: bool, allowed_hosts: list[str],
                 allowed_origins: list[str], bind_host: str) -> None:
        self.app = app
        self.enabled = enabled
        hosts = allowed_hosts or [*DEFAULT_HOSTS, bind_host]
        self.hosts = {h.lower() for h in hosts}
        self.any_host = "*" in self.hosts
        self.origins = {o.lower().rstrip("/") for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] in ("http", "websocket"):
            refusal = self._refusal(scope)
            if refusal is not None:
                await self._refuse(scope, send, refusal)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").lower()
        if not self.any_host and host not in self.hosts and _hostname(host) not in self.hosts:
            return (f"Host {host[:100]!r} is not an allowed host of this keyless gateway "
                    "(RPCFLEET_ALLOWED_HOSTS)")
        origin = headers.get("origin")
        secure = scope.get("scheme") in ("https", "wss")
        own = f"{'https' if secure else 'http'}://{host}"
        if origin is not None and origin != "null":
            if origin.lower().rstrip("/") not in (own, *self.origins):
                return (f"requests from the page origin {origin[:100]!r} are refused by this "
                        "keyless gateway (RPCFLEET_ALLOWED_ORIGINS)")
        elif headers.get("sec-fetch-site") == "cross-site" or origin == "null":
            return "cross-site browser requests are refused by this keyless gateway"
        return None

    async def _refuse(self, scope: Scope, send: Send, message: str) -> None:
        if scope["type"] == "websocket":
            await send_close(send, Forbidden(message))
            return
        await send_error(send, Forbidden(message), 0)


def _hostname(host: str) -> str:
    """`host[:port]` without the port ([::1]:8000 -> [::1])."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
