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


QUORUM_NORMAL_PRIORITY_MAX = 4  # RabbitMQ 4.x quorum queues: 0-4 normal, 5 and above high
# A classic pool queue's broker priority levels (SPEC 1.2, priorities on the wire): jobs take
# levels 0 .. N-1 and sync calls N, its `x-max-priority`. A priority queue keeps a sub-queue per
# level and folds over all of them on every length, emptiness and confirm check: 3 levels cost
# the broker less per message than 11 (docs/performance.md). Queues declared before 1.2 have 10.
JOB_PRIORITY_LEVELS = 2  # jobs 0-4 and 5-9; sync calls above both
LEGACY_MAX_PRIORITY = 10
API_PRIORITIES = 10  # a job's priority in the API: 0-9


def job_message_priority(priority: int, queue_type: QueueType,
                         queue_max: int | None = None) -> int:
    """The AMQP priority of a job of API priority 0-9 on a pool queue whose `x-max-priority` is
    `queue_max`: the API's range cut into that many equal bands, highest first (10 levels: the
    priority itself; 2: 0-4 -> 0, 5-9 -> 1). Sync calls go at SYNC_PRIORITY, which the broker
    counts as the queue's maximum, above every job. The queue's maximum, when its consumers
    report one, wins over the `queue_type` this side was configured with (a gateway set for
    quorum queues in front of a worker that declared a classic one). Unknown, on a quorum
    queue: RabbitMQ 4.x's quorum queues know two levels only, so jobs stay in the normal one and
    sync calls keep overtaking them (3.10's quorum queues ignore priorities); on a classic one,
    the fewest levels an rpcfleet queue has (JOB_PRIORITY_LEVELS): sync calls stay on top."""
    if queue_max is None and queue_type == "quorum":
        return min(priority, QUORUM_NORMAL_PRIORITY_MAX)
    levels = min(queue_max or JOB_PRIORITY_LEVELS, API_PRIORITIES)
    return priority * levels // API_PRIORITIES


DeadLetterStrategy = Literal["at-most-once", "at-least-once"]


def pool_queue_arguments(pool: str, queue_type: QueueType, delivery_limit: int | None = None,
                         dead_letter_strategy: DeadLetterStrategy = "at-most-once",
                         priority_levels: int = JOB_PRIORITY_LEVELS) -> dict[str, Any]:
    """The arguments rpcfleet sets on a pool queue: classic ones `x-max-priority` =
    `priority_levels` (job levels below the sync calls' one). Quorum queues also get the
    delivery limit (the broker dead-letters a message delivered more often: a backstop for
    consumers that die before they can count an attempt) and, for `at-least-once`,
    RabbitMQ's at-least-once dead-lettering, which needs `x-overflow: reject-publish` (a full
    queue refuses publishes: 503 `overloaded`, never a silent drop). Length limits stay
    policies (max-length, ...)."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": names.DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": pool,
        **durable_queue_arguments(queue_type),
    }
    if queue_type == "classic":
        arguments["x-max-priority"] = priority_levels  # none on quorum queues (3.10)
        return arguments
    if delivery_limit is not None:
        arguments["x-delivery-limit"] = delivery_limit
    if dead_letter_strategy == "at-least-once":
        arguments["x-dead-letter-strategy"] = "at-least-once"
        arguments["x-overflow"] = "reject-publish"
    return arguments


# The broker compares only the arguments it knows when a queue is declared again (an `x-`
# argument of our own would never be refused), so the pool's name rides in one it compares and
# that never acts here: no message ever enters a claim queue, so none is ever dead-lettered.
CLAIM_POOL_ARGUMENT = "x-dead-letter-routing-key"
# A claim outlives its last consumer by this (a restart keeps it), then the broker deletes it.
CLAIM_EXPIRES_MS = 60_000


def claim_arguments(pool: str) -> dict[str, Any]:
    """A method's claim queue (`names.claim_queue`): the broker refuses (406) a declaration of
    it with another pool's name, which is how a second pool learns the method is taken."""
    return {"x-dead-letter-exchange": "", CLAIM_POOL_ARGUMENT: pool,
            "x-expires": CLAIM_EXPIRES_MS}


PARK_MS = 5000  # how long a parked outcome waits before it goes back to its queue


def parking_queue_arguments(returns_to: str, queue_type: QueueType) -> dict[str, Any]:
    """A parking queue (`names.parking_queue`): what is parked there goes back to `returns_to`
    after PARK_MS, dead-lettered through the default exchange (at least once on quorum queues).
    A requeue would count against a quorum queue's delivery limit (20 by default from RabbitMQ
    4.0, and every return counts before 4.3); a dead-lettered message comes back as a new one."""
    arguments: dict[str, Any] = {
        "x-message-ttl": PARK_MS,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": returns_to,
        **durable_queue_arguments(queue_type),
    }
    if queue_type == "quorum":
        arguments["x-dead-letter-strategy"] = "at-least-once"
        arguments["x-overflow"] = "reject-publish"
    return arguments
