"""SSRF guard for callback URLs: http(s) only, and no address that is loopback, private,
link-local, reserved, multicast or otherwise not global — IPv4-mapped / 6to4 / Teredo / NAT64
IPv6 forms and numeric IPv4 spellings (2130706433, 0x7f.1, 127.1) included, since the check
is made on what the name resolves to. Listed hosts are allowed anyway. The check runs at submit
and again at send time, and the sender connects to the address that was checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

Resolver = Callable[[str, int], Awaitable[list[str]]]
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv6 forms that embed an IPv4 address in their low 32 bits, which Python 3.11 does not
# unwrap: SIIT's IPv4-translated addresses, the deprecated IPv4-compatible ones, and local-use
# NAT64 (RFC 8215). The embedded address is checked like any other.
EMBEDDING_V4 = (ipaddress.ip_network("::ffff:0:0:0/96"), ipaddress.ip_network("::/96"),
                ipaddress.ip_network("64:ff9b:1::/48"))
# Not global, though Python 3.11 says it is: site-local (deprecated, RFC 3879).
NOT_GLOBAL = (ipaddress.ip_network("fec0::/10"),)


class CallbackUrlRefused(ValueError):
    """The callback URL may not be used."""

    transient = False  # True: the same URL may pass later (its name did not resolve now)


class CallbackHostUnresolved(CallbackUrlRefused):
    """The host did not resolve now: a DNS hiccup at send time is retried, not final."""

    transient = True


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    scheme: str
    host: str  # ASCII (an internationalised name in its IDNA form): the Host header, SNI
    port: int
    addresses: tuple[str, ...]  # the checked IPs the sender connects to, in resolver order
    target: str  # path + query

    @property
    def address(self) -> str:
        return self.addresses[0]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
              ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            found.append(ip.sixtofour)
        if ip.teredo is not None:
            found.extend(ip.teredo)
        if ip in NAT64 or any(ip in network for network in EMBEDDING_V4):
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and (
            any(ip in network for network in NOT_GLOBAL) or ip in EMBEDDING_V4[2]):
        return True  # local-use NAT64 is never global, whatever it embeds
    return any(not candidate.is_global or candidate.is_multicast
               for candidate in _embedded(ip))


def _allow_key(entry: str) -> str:
    """An RPCFLEET_CALLBACK_ALLOW_HOSTS entry as `check` compares it: lower case, an IPv6
    literal without brackets when no port is given (`[::1]` and `::1` alike), an
    internationalised name in its IDNA form."""
    entry = entry.strip().lower()
    if entry.startswith("[") and entry.endswith("]"):
        return entry[1:-1]
    try:
        return _ascii_host(entry)
    except CallbackUrlRefused:
        return entry


def _host_port_key(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ascii_host(host: str) -> str:
    """A host name as it goes on the wire: an internationalised one in its IDNA form, by
    UTS #46 as browsers and httpx map it (Python's own codec is IDNA 2003, which sends `faß.de`
    to another domain, `fass.de`); an ASCII one as it is (`under_score` names included)."""
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError: a label over 63 characters, a disallowed character
        raise CallbackUrlRefused(f"callback_url host {host[:80]!r} is not a valid host name"
                                 ) from None


class UrlGuard:
    def __init__(self, allow_hosts: list[str], resolver: Resolver = system_resolver) -> None:
        self.allow = {_allow_key(h) for h in allow_hosts}
        self.resolver = resolver

    async def check(self, url: str) -> CheckedUrl:
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
            # A control character cannot be sent in a request line: refused now, not retried
            # until the callback window ends.
            raise CallbackUrlRefused("callback_url contains a control character")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise CallbackUrlRefused(f"callback_url is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise CallbackUrlRefused("callback_url must be http or https")
        host = (parts.hostname or "").lower()
        if not host:
            raise CallbackUrlRefused("callback_url has no host")
        host = host if ":" in host else _ascii_host(host)
        port = port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await self.resolver(host, port)
        except UnicodeError:
            raise CallbackUrlRefused(f"callback_url host {host[:80]!r} is not a valid host name"
                                     ) from None
        except OSError:
            raise CallbackHostUnresolved(f"callback_url host {host!r} does not resolve"
                                         ) from None
        if not addresses:
            raise CallbackHostUnresolved(f"callback_url host {host!r} has no address")
        allowed = host in self.allow or _host_port_key(host, port) in self.allow
        if not allowed:
            if any(forbidden(a) for a in addresses):
                # Which address is not said: the caller must not learn internal DNS answers.
                raise CallbackUrlRefused(
                    "callback_url resolves to a non-public address; list the host in "
                    "RPCFLEET_CALLBACK_ALLOW_HOSTS to allow it")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return CheckedUrl(url, parts.scheme, host, port, tuple(dict.fromkeys(addresses)),
                          target)
