"""The SSRF guard: every spelling of a non-public address is refused, at submit and at send."""

from __future__ import annotations

import pytest

from gateway.webhooks import CallbackUrlRefused, UrlGuard
from gateway.webhooks.urls import system_resolver

REFUSED = [
    "http://127.0.0.1/", "http://localhost/", "http://[::1]/", "http://0.0.0.0/",
    "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/", "http://169.254.169.254/",
    "http://100.64.0.1/", "http://[fe80::1]/", "http://[fc00::1]/", "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/", "http://[2002:7f00:1::]/", "http://[64:ff9b::a00:1]/",
    "http://224.0.0.1/", "http://2130706433/", "http://0x7f.1/", "http://017700000001/",
    "http://127.1/", "ftp://example.com/", "file:///etc/passwd", "http:///path",
    "http://[::1]:8080/", "javascript:alert(1)",
    # Issue 22: forms Python 3.11 counts as global. Local-use NAT64 (RFC 8215), SIIT's
    # IPv4-translated addresses, the deprecated IPv4-compatible ones and site-local.
    "http://[64:ff9b:1::a00:1]/", "http://[::ffff:0:7f00:1]/", "http://[::ffff:0:a00:1]/",
    "http://[::7f00:1]/", "http://[::a00:1]/", "http://[fec0::1]/",
]


async def public(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


@pytest.mark.parametrize("url", REFUSED)
async def test_non_public_addresses_and_schemes_are_refused(url: str) -> None:
    with pytest.raises(CallbackUrlRefused):
        await UrlGuard([]).check(url)


async def test_a_host_that_is_not_a_valid_name_is_refused_not_a_crash() -> None:
    # A 64-character label: the resolver's IDNA encoding raises UnicodeError (was a 500).
    with pytest.raises(CallbackUrlRefused, match="not a valid host name"):
        await UrlGuard([]).check(f"http://{'a' * 64}.example.com/hook")


async def test_a_listed_host_is_allowed_and_the_checked_address_is_kept() -> None:
    checked = await UrlGuard(["127.0.0.1"]).check("http://127.0.0.1:9999/hook?x=1")
    assert (checked.address, checked.port, checked.target) == ("127.0.0.1", 9999, "/hook?x=1")
    with pytest.raises(CallbackUrlRefused):
        await UrlGuard(["127.0.0.1:1"]).check("http://127.0.0.1:9999/hook")


async def test_a_name_that_resolves_to_a_private_address_later_is_refused_at_send_time() -> None:
    answers = iter([["93.184.215.14"], ["10.0.0.5"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    guard = UrlGuard([], resolver=rebinding)
    assert (await guard.check("https://hooks.example/x")).address == "93.184.215.14"
    with pytest.raises(CallbackUrlRefused):
        await guard.check("https://hooks.example/x")  # the check the sender makes again


async def test_the_system_resolver_reads_numeric_spellings_like_the_kernel_does() -> None:
    assert await system_resolver("2130706433", 80) == ["127.0.0.1"]
    assert await UrlGuard([], resolver=public).check("https://hooks.example/x")


async def test_a_url_with_a_control_character_is_refused_at_once_not_retried() -> None:
    """No request line can carry it: refused at submit (422), never pending until the window
    ends (it was: the sender's request failed outside its error handling, every lease)."""
    for url in ("http://127.0.0.1:9/hook\u0001", "http://127.0.0.1:9/a\nb", "http://h.example/\x7f"):
        with pytest.raises(CallbackUrlRefused, match="control character"):
            await UrlGuard(["127.0.0.1"], resolver=public).check(url)


async def test_an_internationalised_host_is_checked_and_sent_in_its_idna_form() -> None:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.215.14"]

    checked = await UrlGuard([], resolver=resolver).check("https://Bücher.example/hook")
    assert checked.host == asked[0] == "xn--bcher-kva.example"
    # UTS #46, as browsers and httpx: Python's IDNA 2003 codec sent faß.de to fass.de.
    assert (await UrlGuard([], resolver=resolver).check("https://faß.de/h")).host == (
        "xn--fa-hia.de")
    # ASCII names go as they are: a compose service name with an underscore is one.
    assert (await UrlGuard([], resolver=resolver).check("http://my_receiver/h")).host == (
        "my_receiver")
    listed = UrlGuard(["bücher.test"], resolver=lambda host, port: _loopback())
    assert (await listed.check("http://bücher.test:8000/")).address == "127.0.0.1"


async def _loopback() -> list[str]:
    return ["127.0.0.1"]


async def test_an_ipv6_literal_is_listed_with_or_without_brackets_and_port() -> None:
    for entry in ("::1", "[::1]", "[::1]:9000"):
        checked = await UrlGuard([entry]).check("http://[::1]:9000/h")
        assert checked.address == "::1", entry
    with pytest.raises(CallbackUrlRefused):
        await UrlGuard(["[::1]:9001"]).check("http://[::1]:9000/h")


async def test_every_address_a_name_resolves_to_is_checked_and_kept_in_order() -> None:
    async def both(host: str, port: int) -> list[str]:
        return ["::1", "127.0.0.1", "::1"]

    checked = await UrlGuard(["localhost"], resolver=both).check("http://localhost:1/")
    assert checked.addresses == ("::1", "127.0.0.1")
