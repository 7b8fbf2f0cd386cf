"""One pool per method (SPEC 1.2): a pool claims each of its methods before it binds anything.

Two pools bound to one method name would both get a copy of every call (the requests exchange is
direct): each would run it, and the caller would get whichever answered first. So each method has
a claim queue (`names.claim_queue`) declared with the serving pool's name as an argument (one the
broker compares: `protocol.queues.claim_arguments`); the broker refuses a declaration with other
arguments (406), so a second pool learns at once, and atomically, that the method is taken, and
by whom. The pool's consumers hold a consumer on each
claim (no message ever enters one); the broker deletes a claim `CLAIM_EXPIRES_MS` after its last
consumer left, so a pool that is gone frees its methods, and a restart keeps them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue

from protocol import names
from protocol.queues import CLAIM_EXPIRES_MS, CLAIM_POOL_ARGUMENT, claim_arguments

EXIT_CLASH = 78  # a consumer found its method taken: the supervisor stops the pool (EX_CONFIG)


class MethodClash(Exception):
    """A method of this pool is served by another live pool."""

    def __init__(self, method: str, pool: str, holder: str) -> None:
        super().__init__(
            f"method {method!r} is served by pool {holder!r} already: pool {pool!r} cannot serve "
            f"it too (both pools would run every call). Rename the method, or stop pool "
            f"{holder!r} first: its claim ends {CLAIM_EXPIRES_MS // 1000} s after its last "
            f"consumer.")
        self.method, self.pool, self.holder = method, pool, holder


async def claim(channel: AbstractChannel, pool: str,
                methods: Sequence[str]) -> list[AbstractQueue]:
    """Declare this pool's claim on each method; MethodClash on the first one another pool
    holds (the broker then closes `channel`)."""
    claims = []
    for method in methods:
        try:
            claims.append(await channel.declare_queue(
                names.claim_queue(method), durable=False, arguments=claim_arguments(pool)))
        except aio_pika.exceptions.ChannelPreconditionFailed as exc:
            raise MethodClash(method, pool, _holder(str(exc))) from None
    return claims


async def check_claims(connection: AbstractConnection, pool: str,
                       methods: Sequence[str]) -> None:
    """Claim the methods on a channel of its own, for a supervisor that forks nothing before
    it knows (the claims then wait `CLAIM_EXPIRES_MS` for its consumers to hold them)."""
    channel = await connection.channel()
    try:
        await claim(channel, pool, methods)
    finally:
        if not channel.is_closed:
            await channel.close()


def _holder(refusal: str) -> str:
    """The pool named in the broker's 406 ("... inequivalent arg 'x-dead-letter-routing-key'
    ... received 'new' but current is 'catalog'"; other versions say "the value 'catalog'")."""
    if CLAIM_POOL_ARGUMENT not in refusal:
        return "(another pool: the claim was declared with other arguments)"
    found = re.search(r"current is (?:the value )?'([^']*)'", refusal)
    return found.group(1) if found else "(another pool)"
