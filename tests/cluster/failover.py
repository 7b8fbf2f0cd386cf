"""A node of a 3-node cluster dies under mixed load (sync calls and jobs): which node, what the
fleet saw, and the node brought back. Shared by tests/cluster/test_failover.py (one repeat of each
case) and `./run bench cluster` (several, with the gap's median and maximum)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from protocol import names
from rpcfleet.broker import LocalBroker
from rpcfleet.cluster import LocalCluster
from tests.faults.stage import in_background
from tests.support.faults import OK, Ledger, Report, account, load
from tests.support.fleet import worker_factory
from tests.support.gateway import Gateway, gateway_factory, wait_for_workers
from tests.support.netns import Host
from tests.support.waiting import wait_for

POOL = "ledger"
QUEUE = names.pool_queue(POOL)
ROLES = ("leader", "follower", "clients")  # the pool queue's leader, a follower, the clients'
SILENT = "silent"  # the clients' node frozen (SIGSTOP): no reset, nothing answers
LOAD_S = 10.0  # of mixed load per case; the node dies once the load runs
GAP_LIMIT_S = 5.0  # sync calls answered again within this of the kill (issue 27)
# A silent node is noticed by heartbeats (a gateway's 4 s: 15 s; a worker's 5 s: 18 s) and by its
# peers' net tick (10 s in LocalCluster); then the clients reconnect and the leaders move.
SILENT_GAP_LIMIT_S = 40.0


@dataclass
class Failover:
    role: str
    killed: str  # the node's name, and every role it had (or what was cut)
    gap_s: float  # from the kill (or the heal) until sync calls are answered again (_gap)
    report: Report
    refusals: Counter[str]  # the error codes answered to calls and submissions after the kill
    timeline: str = ""  # what calls got, half second by half second after the fault

    def __str__(self) -> str:
        return (f"{self.role} ({self.killed}): gap {self.gap_s:.2f} s; {self.report}; "
                f"refusals {dict(self.refusals)}\n{self.timeline}")



@dataclass
class Fleet:
    cluster: LocalCluster
    gateway: Gateway
    ledger: Path


@contextmanager
def quorum_fleet(cluster: LocalCluster, folder: Path, gateway_host: Host | None = None,
                 worker_host: Host | None = None) -> Iterator[Fleet]:
    """A gateway of 2 processes and a worker of 2 consumers on quorum queues, both given every
    node of `cluster` (as a user would: RPCFLEET_AMQP_URL lists them, node 0 first); each on a
    host of its own when given one (tests/support/netns.py), else on this one."""
    ledger = folder / "ledger"
    ledger.mkdir(parents=True, exist_ok=True)
    workers = worker_factory(cluster.amqp_url, folder)
    gateways = gateway_factory(cluster.amqp_url, folder)
    try:
        next(workers)("tests.pools.ledger:pool", pool=POOL, processes=2, prefetch=2,
                      test_ledger=ledger, queue_type="quorum", wait=False,
                      inside=tuple(worker_host.inside) if worker_host else ())
        gateway = next(gateways)(workers=2, queue_type="quorum", rpc_timeout_default=10,
                                 publish_timeout=2,
                                 inside=tuple(gateway_host.inside) if gateway_host else (),
                                 address=gateway_host.address if gateway_host else "127.0.0.1")
        wait_for_workers(gateway, 2, timeout=60)
        yield Fleet(cluster, gateway, ledger)
    finally:
        for factory in (gateways, workers):
            next(factory, None)


def pick(cluster: LocalCluster, role: str) -> tuple[LocalBroker, str]:
    """The node to kill for `role` (a follower: one that no client uses, when there is one);
    with every role it has, for the report."""
    leader = cluster.queue_leader(QUEUE).nodename
    clients = Counter(node.nodename for node in cluster.client_nodes())
    busiest = clients.most_common(1)[0][0] if clients else leader

    def roles(name: str) -> str:
        had = [r for r, yes in (("leader", name == leader), ("clients", name in clients)) if yes]
        return f"{name}: {', '.join(had) or 'follower'}"

    nodes = [node.nodename for node in cluster.nodes]
    if role == "leader":
        choice = leader
    elif role in ("clients", SILENT):
        choice = busiest  # the node most client connections use
    else:
        followers = [n for n in nodes if n != leader and n not in clients]
        choice = followers[0] if followers else next(n for n in nodes if n != leader)
    return cluster.node_named(choice), roles(choice)


@dataclass
class Fault:
    """What goes wrong, and how it ends. `heal` runs `heal_after` seconds after `inflict` (the
    gap is then counted from the heal: nothing could answer before), or once the load ended
    (None: the gap counts from `inflict`); `restore` after the accounting."""

    inflict: Callable[[], None]
    heal: Callable[[], None] = lambda: None
    heal_after: float | None = None
    restore: Callable[[], None] = lambda: None


def kill_under_load(fleet: Fleet, role: str, load_s: float = LOAD_S) -> Failover:
    """Mixed load; kill the node of `role` (or freeze it, SILENT) once calls flow; account for
    every request; then restart the node and wait until it is back in the queue's members."""
    node, roles = pick(fleet.cluster, role)

    def restore() -> None:
        node.start()
        wait_for(lambda: len(fleet.cluster.online_members(QUEUE)) == len(fleet.cluster.nodes),
                 timeout=120, interval=0.5, what=f"{node.nodename} back in the queue's members")

    if role == SILENT:  # then brought back like the others
        fault = Fault(node.freeze, heal=node.kill, restore=restore)
        load_s += SILENT_GAP_LIMIT_S  # calls must still flow when the fleet has moved
    else:
        fault = Fault(node.kill, restore=restore)
    return under_load(fleet, role, roles, fault, load_s)


def under_load(fleet: Fleet, role: str, what: str, fault: Fault, load_s: float) -> Failover:
    """Mixed load; `fault` once calls flow; account for every request; then `fault.restore`."""
    ledger = Ledger(fleet.ledger)
    url = fleet.gateway.url
    loading = in_background(lambda: load(ledger, url, load_s))
    wait_for(lambda: sum(a.kind == "call" and a.outcome == OK for a in ledger.attempts) >= 20,
             timeout=30, what="calls to flow before the fault")
    struck_at = since = time.monotonic()
    fault.inflict()
    if fault.heal_after is not None:
        time.sleep(max(0.0, struck_at + fault.heal_after - time.monotonic()))  # the fault's span
        fault.heal()
        since = time.monotonic()
    loading.join()
    if fault.heal_after is None:
        fault.heal()
    with httpx.Client(base_url=url, timeout=15) as http:
        gap = _gap(ledger, since, http)
        report = account(ledger, http, drain_seconds=120)
    refusals = Counter(f"{a.kind} {a.status} {a.code}" if a.status else f"{a.kind} {a.error}"
                       for a in ledger.attempts
                       if a.at - a.seconds >= struck_at and a.outcome != OK)
    fault.restore()
    return Failover(role, what, gap, report, refusals, _timeline(ledger, struck_at))


def _timeline(ledger: Ledger, killed_at: float, step: float = 0.5) -> str:
    """Calls by the half second they were sent in after the kill: how many, and their answers."""
    rows: dict[int, Counter[str]] = {}
    for a in ledger.attempts:
        sent = a.at - a.seconds - killed_at
        if a.kind == "call" and sent >= 0:
            rows.setdefault(int(sent / step), Counter())[a.code or a.error or "ok"] += 1
    return "\n".join(f"  +{slot * step:4.1f} s: {dict(rows[slot])}" for slot in sorted(rows)
                     if set(rows[slot]) != {"ok"} or slot == 0)


def _gap(ledger: Ledger, since: float, http: httpx.Client) -> float:
    """From `since` until sync calls are answered again for good: the first call answered 200
    among those sent after the last refused one (a call that slipped through before the fault
    took hold does not end the gap)."""
    calls = [a for a in ledger.attempts if a.kind == "call" and a.at - a.seconds >= since]
    last_refused = max((a.at - a.seconds for a in calls if a.outcome != OK), default=since)
    answered = [a.at for a in calls if a.outcome == OK and a.at - a.seconds >= last_refused]
    if answered:
        return min(answered) - since
    wait_for(lambda: http.post("/v1/rpc/effect?timeout=2", json={"value": "gap", "ms": 1})
             .status_code == 200, timeout=120, interval=0.2, what="sync calls answered again")
    return time.monotonic() - since

