"""Names of the AMQP topology and the small pure functions that derive them (SPEC)."""

from __future__ import annotations

import re

EXCHANGE = "rpcfleet"  # direct, durable: requests, routing key = method name
DEAD_LETTER_EXCHANGE = "rpcfleet.dlx"  # direct, durable: routing key = pool
EVENTS_EXCHANGE = "rpcfleet.events"  # topic: job.{id}.{kind}, worker.{pool}.{slot}
CONTROL_EXCHANGE = "rpcfleet.control"  # topic: pool.{pool}, worker.{id}, all
# Every exchange and its type, all durable: what each component declares before using them.
EXCHANGES = ((EXCHANGE, "direct"), (DEAD_LETTER_EXCHANGE, "direct"), (EVENTS_EXCHANGE, "topic"),
             (CONTROL_EXCHANGE, "topic"))
REPLIES_QUEUE = "rpcfleet.replies"  # durable: replies of jobs
DEAD_EVENTS_QUEUE = "rpcfleet.dead-events"  # durable: copy of dead letters for gateways
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"  # pseudo-queue of sync replies

HEADER_DEADLINE = "x-rpcfleet-deadline"  # epoch milliseconds
HEADER_ATTEMPT = "x-rpcfleet-attempt"  # the delivery's attempt: 1, then +1 per redelivery
HEADER_WORKER = "x-rpcfleet-worker"  # on replies: the consumer's worker id
HEADER_STARTED_AT = "x-rpcfleet-started-at"  # on replies: epoch ms the handler started
HEADER_FINISHED_AT = "x-rpcfleet-finished-at"  # on replies: epoch ms the handler finished
# On replies: how many progress events the run sent before it (recorded before the reply).
HEADER_PROGRESS_EVENTS = "x-rpcfleet-progress-events"
HEADER_DEAD_REASON = "x-rpcfleet-dead-reason"  # on dead letters
HEADER_POOL = "x-rpcfleet-pool"  # on dead letters: the pool whose queue held it
HEADER_DEAD_DETAIL = "x-rpcfleet-dead-detail"  # on dead letters: what went wrong, for people
HEADER_DEAD_AT = "x-rpcfleet-dead-at"  # on dead letters: epoch ms
HEADER_SENT_AT = "x-rpcfleet-sent-at"  # epoch ms a gateway published it (with tracing on)

# W3C Trace Context: taken from the HTTP request, carried as AMQP headers of the same names.
TRACE_HEADERS = ("traceparent", "tracestate")

CONTENT_TYPE = "application/json"
# Sync calls overtake every job: the broker counts a priority above a queue's x-max-priority as
# that maximum, and jobs stay below it (protocol.queues.job_message_priority).
SYNC_PRIORITY = 10
JOB_PRIORITY_MAX = 9
CONTROL_ALL = "all"
# AMQP caps expiration at 2^32-1 ms (about 49.7 days); a larger one closes the channel (406).
MAX_EXPIRATION_MS = 2**32 - 1
# A method name is a routing key and a `type` (AMQP short strings, 255 bytes at most), a metrics
# label and a path segment: ASCII letters, digits, `_`, `-` and `.`, at most 128 of them.
METHOD_NAME_MAX = 128
_METHOD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def valid_method_name(name: str) -> bool:
    return len(name) <= METHOD_NAME_MAX and _METHOD_NAME.fullmatch(name) is not None


def pool_queue(pool: str) -> str:
    return f"rpcfleet.pool.{pool}"


def claim_queue(method: str) -> str:
    """A method's claim (SPEC 1.2, one pool per method): a queue no message ever enters, declared
    with the serving pool's name as an argument, held by that pool's consumers."""
    return f"rpcfleet.claim.{method}"


def dead_queue(pool: str) -> str:
    return f"rpcfleet.dead.{pool}"


def worker_id(host: str, pool: str, slot: int) -> str:
    return f"{host}:{pool}:{slot}"


def job_event_key(job_id: str, kind: str) -> str:
    """Routing key of a job event: kind is started, progress or finished."""
    return f"job.{job_id}.{kind}"


def pool_retired_key(pool: str) -> str:
    """Routing key on rpcfleet.events of a pool's retirement, once its queue is deleted (1.2)."""
    return f"pool.{pool}.retired"


def beat_key(pool: str, slot: int) -> str:
    return f"worker.{pool}.{slot}"


def control_pool_key(pool: str) -> str:
    return f"pool.{pool}"


def control_worker_key(worker: str) -> str:
    return f"worker.{worker}"


def control_key_for(pool: str | None) -> str:
    """Where a command about one request goes: its pool's consumers, or all when unknown."""
    return control_pool_key(pool) if pool else CONTROL_ALL


def is_direct_reply_to(reply_to: str | None) -> bool:
    """A sync call's reply address (the broker hands out `amq.rabbitmq.reply-to.<token>`)."""
    return reply_to is not None and reply_to.startswith(DIRECT_REPLY_TO)


def is_durable_reply_to(reply_to: str | None) -> bool:
    """A worker tells a job from a sync call by its `reply_to` alone (SPEC 1.1): direct reply-to
    is a sync call (transient reply); any other queue is a job's durable reply queue
    (persistent, confirmed reply)."""
    return reply_to is not None and reply_to != "" and not is_direct_reply_to(reply_to)


def is_job_reply_to(reply_to: str | None) -> bool:
    """Replies of rpcfleet's own jobs: the shared queue, or a gateway host's own."""
    return reply_to is not None and (reply_to == REPLIES_QUEUE
                                     or reply_to.startswith(REPLIES_QUEUE + "."))


def replies_queue(store_id: str) -> str:
    """The durable queue of job replies of the gateways sharing one job store (one host with
    SQLite): a reply always reaches a gateway that can record it."""
    return f"{REPLIES_QUEUE}.{store_id}"


def dead_events_queue(store_id: str) -> str:
    """The dead-letter copies for the gateways sharing one job store: bound to rpcfleet.dlx with
    every pool's key, so each store sees every dead letter and records its own jobs'."""
    return f"{DEAD_EVENTS_QUEUE}.{store_id}"


PARKED_PREFIX = "rpcfleet.parked."


def parking_queue(queue: str) -> str:
    """Where an outcome from `queue` waits while the job store cannot record it: a durable queue
    whose messages expire back into `queue` (no requeue, so no delivery is spent on it)."""
    return PARKED_PREFIX + queue.removeprefix("rpcfleet.")
