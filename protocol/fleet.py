"""Fleet messages: worker beats, control commands and job events (SPEC: rpcfleet.events/control)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictInt, TypeAdapter, model_validator

PREFETCH_MIN = 1
PREFETCH_MAX = 1000  # a consumer holding more than this is a queue, not a worker

# Strict: `true` or "5" is a client's bug, refused (lax parsing read them as 1 and 5).
PrefetchValue = Annotated[StrictInt, Field(ge=PREFETCH_MIN, le=PREFETCH_MAX)] | Literal["auto"]


class ProcessRange(BaseModel):
    """The consumers a host runs for a pool (SPEC 1.2, elastic pools): at least `min`, up to
    `max`; min = max is a fixed count. Written `MIN..MAX` (or `N`) on the command line and in
    RPCFLEET_PROCESSES."""

    min: StrictInt = Field(ge=1)
    max: StrictInt = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> ProcessRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    @classmethod
    def parse(cls, text: str | int) -> ProcessRange:
        """`4` (fixed) or `1..8`; ValueError with what is wrong."""
        if isinstance(text, int):
            return cls(min=text, max=text)
        low, dots, high = text.strip().partition("..")
        try:
            least, most = int(low), int(high) if dots else int(low)
        except ValueError:
            raise ValueError(f"{text!r} is not a count (4) or a range (1..8)") from None
        if least < 1:
            raise ValueError(f"{text!r}: a pool keeps at least 1 consumer per host")
        if least > most:
            raise ValueError(f"{text!r}: MIN is above MAX")
        return cls(min=least, max=most)

    @property
    def elastic(self) -> bool:
        return self.min < self.max

    def __str__(self) -> str:
        return f"{self.min}..{self.max}" if self.elastic else str(self.min)


class ScalingDecision(BaseModel):
    """One decision of an elastic pool's supervisor: when, which way, why."""

    at: str  # RFC 3339
    change: int  # consumers added (> 0) or retired (< 0)
    why: str


class Processes(BaseModel):
    """A worker entry's `processes` (SPEC 1.2): its host's range for the pool and the consumers
    it runs now."""

    min: int
    max: int
    now: int
    # Extensions: why the supervisor holds back a consumer it would add (host memory), or None;
    # the consumers it added and retired since it started; its last decision.
    held_back: str | None = None
    added: int = 0
    retired: int = 0
    last: ScalingDecision | None = None


class MethodDoc(BaseModel):
    """What a method takes and gives, for the gateway's API docs: JSON Schemas whose references
    point into `defs`, named `{pool}.{Model}` (OpenAPI components)."""

    summary: str | None = None
    description: str | None = None
    params: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    result: dict[str, Any] | None = None
    defs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    time_limit: float | None = None


class WorkerEntry(BaseModel):
    """One consumer process as its beat announces it (and /v1/workers lists it, without `docs`)."""

    id: str
    pool: str
    host: str
    pid: int
    slot: int
    methods: list[str]
    prefetch: int
    prefetch_mode: Literal["fixed", "auto"] = "fixed"
    concurrency: int = Field(ge=1)
    in_flight: int
    # An extension: False while its subscription is down (a channel the broker closed, being
    # restored; not yet started): such a worker is listed but not serving.
    consuming: bool = True
    # SPEC 1.2: every beat of a consumer leaving for good (a graceful stop, a retirement),
    # from the start of its drain until it exits; gateways list it but count it for nothing.
    leaving: bool = False
    # An extension (1.2): a prefetch change under way (SPEC: cancel, finish what it holds,
    # consume again): the broker counts no consumer meanwhile, yet it serves the pool.
    resubscribing: bool = False
    # An extension: counts the consumer's (re)subscriptions after a lost channel or connection.
    # Gateways treat a new session like a new process and replay the pending cancels to it.
    session: int = 0
    # An extension (SPEC 1.1: batch sizes are visible): per batched method, its calls, the
    # requests they served, and the mean and last batch size.
    batches: dict[str, dict[str, float]] | None = None
    processed: int
    failed: int
    pss_bytes: int | None
    cache_bytes: int | None
    cache_shape: str | None = None
    # An extension (1.2): private memory this consumer gained since it started, when past a
    # share of the shared cache: the sign that the cache is being copied into it. None: not so.
    cache_copied_bytes: int | None = None
    last_seen: str
    beat_interval: float = Field(5.0, gt=0)
    docs: dict[str, MethodDoc] | None = None  # an extension: per method, for the API docs
    # An extension: the rpcfleet version the consumer runs (two side by side during a rolling
    # upgrade: docs/upgrading.md). None from a version before it was sent.
    version: str | None = None
    # (1.2) Its host's range for the pool and the consumers there now; None from a version
    # before elastic pools.
    processes: Processes | None = None
    # (1.2) Its pool queue's x-max-priority as the broker has it (SPEC 1.2, priorities on the
    # wire): gateways map a job's priority onto that many levels. None on quorum queues and
    # from a version before it was sent.
    queue_max_priority: int | None = None


class SetPrefetch(BaseModel):
    op: Literal["set_prefetch"] = "set_prefetch"
    prefetch: PrefetchValue


class Cancel(BaseModel):
    op: Literal["cancel"] = "cancel"
    job_id: str
    # An extension for sync calls whose caller hung up: skip the request if it is still queued,
    # let it finish if it runs (stopping it would cost the consumer a replacement).
    queued_only: bool = False


class SetProcesses(ProcessRange):
    """(1.2) A pool's consumers per host, live: each host's supervisor applies the range. Its
    rules are the range's (min <= max): a command that breaks them, from a client in another
    language, is malformed and ignored, never applied as an inverted range."""

    op: Literal["set_processes"] = "set_processes"

    @property
    def range(self) -> ProcessRange:
        return ProcessRange(min=self.min, max=self.max)


class RetirePool(BaseModel):
    """(1.2) A pool taken out of service: its consumers leave for good, and their supervisors
    with them. `drain`: sent once its queue is empty, they finish what they hold; without,
    they finish what runs and hand back the rest, which is then dead-lettered (`retired`)."""

    op: Literal["retire"] = "retire"
    drain: bool = False


class PoolRetired(BaseModel):
    """(1.2) On rpcfleet.events as `pool.{pool}.retired`: a pool's queue is gone."""

    pool: str
    drained: bool
    dead_lettered: int


class Replayed(BaseModel):
    """Sent by a gateway to a new consumer after the cancels it may not know (an extension:
    a consumer that ignores it merely waits its replay grace before consuming)."""

    op: Literal["replayed"] = "replayed"


Command = SetPrefetch | SetProcesses | RetirePool | Cancel | Replayed
ControlCommand = Annotated[Command, Field(discriminator="op")]
CONTROL_ADAPTER: TypeAdapter[Command] = TypeAdapter(ControlCommand)
CONTROL_OPS = frozenset(("set_prefetch", "set_processes", "retire", "cancel", "replayed"))


class UnknownCommand(ValueError):
    """A control command whose `op` this version does not know: a newer gateway's, during a
    rolling upgrade (docs/upgrading.md). A consumer ignores it."""

    def __init__(self, op: str) -> None:
        super().__init__(f"unknown control command {op!r}")
        self.op = op


def read_control(body: bytes) -> Command:
    """The command in a control message; `UnknownCommand` for an op this version does not
    know, ValueError for a malformed one. Unknown fields of a known op are ignored: a newer
    gateway may add some."""
    try:
        return CONTROL_ADAPTER.validate_json(body)
    except ValueError:
        try:
            op = json.loads(body).get("op")
        except (ValueError, AttributeError):
            op = None
        if isinstance(op, str) and op not in CONTROL_OPS:
            raise UnknownCommand(op) from None
        raise


class JobEvent(BaseModel):
    """job.{id}.started / .progress / .finished on rpcfleet.events."""

    job_id: str
    kind: Literal["started", "progress", "finished"]
    worker: str | None = None
    attempt: int | None = None
    at: int  # epoch ms
    fraction: float | None = None
    note: str | None = None
    n: int | None = None  # progress: its number in the run (1, 2, ...), from workers of 1.2
    status: str | None = None
    extra: dict[str, Any] | None = None
