"""Arguments of the durable queues (SPEC: AMQP topology). Every party that declares a queue uses
these, so a redeclaration never differs (the broker closes the channel with 406 if it does)."""

from __future__ import annotations

from typing import Any, Literal

from protocol import names

QueueType = Literal["classic", "quorum"]


def durable_queue_arguments(queue_type: QueueType) -> dict[str, Any]:
    """Replies, dead letters and dead events: quorum too when the pools are (replicated in a
    cluster, so a node's loss strands no job reply)."""
    return {"x-queue-type": "quorum"} if queue_type == "quorum" else {}


def pool_queue_arguments(pool: str, queue_type: QueueType) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": names.DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": pool,
        **durable_queue_arguments(queue_type),
    }
    if queue_type == "classic":
        arguments["x-max-priority"] = names.MAX_PRIORITY  # no priorities on quorum queues (3.10)
    return arguments
