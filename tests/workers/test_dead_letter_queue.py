"""`rpcfleet dead POOL`: dead letters are listed without being removed, and replayed or purged
only when asked, each only once the broker has what replaces it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from urllib.parse import urlsplit

import pytest

from protocol import names, replies
from protocol.clock import now_ms
from protocol.dead import DeadLetter, Waiter, replay_headers
from tests.support.amqp_client import amqp_client
from tests.support.fleet import StartWorker
from tests.support.processes import REPO, RPCFLEET, child_env
from tests.support.rabbit import Vhost
from tests.support.waiting import async_wait_for
from transport.deadletters import dead_letter_queue

DEAD = names.dead_queue("basic")


def dead_cli(amqp_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RPCFLEET, "dead", "basic", *args], env=child_env(amqp_url),
                          cwd=REPO, capture_output=True, text=True, timeout=60)


async def test_dead_letters_are_listed_untouched_then_replayed_or_purged_when_asked(
    vhost: Vhost, start_worker: StartWorker
) -> None:
    start_worker()
    async with amqp_client(vhost.amqp_url) as client:
        own = await client.channel.declare_queue("client-replies", exclusive=True)
        malformed = await client.send("echo", body=b"{not json", reply_to=None)
        busy = await client.send("sleep", {"seconds": 1.5})
        # Both wait behind the busy consumer past their deadlines: dead-lettered `expired`.
        late = await client.send("echo", {"late": True}, deadline_ms=now_ms() + 300,
                                 reply_to=own.name)
        sync_late = await client.send("echo", {"sync": True}, deadline_ms=now_ms() + 300)
        assert (await client.answer(busy)).reply.ok
        await async_wait_for(lambda: asyncio.to_thread(lambda: vhost.queue_counts(DEAD)[0] == 3),
                             what="three dead letters")

        listing = await asyncio.to_thread(dead_cli, vhost.amqp_url, "--json")
        assert listing.returncode == 0, listing.stderr
        letters = {letter["id"]: letter for letter in json.loads(listing.stdout)}
        assert {i: (x["reason"], x["waiter"]) for i, x in letters.items()} == {
            malformed: ("malformed", "none"), late: ("expired", "queue"),
            sync_late: ("expired", "sync")}
        assert letters[late]["detail"] == "deadline passed while queued"
        assert letters[late]["dead_at_ms"] <= now_ms()
        table = await asyncio.to_thread(dead_cli, vhost.amqp_url)
        assert table.stdout.splitlines()[0].split() == [
            "id", "method", "reason", "attempt", "waiter", "age", "bytes", "detail"]
        assert "3 dead letters in rpcfleet.dead.basic" in table.stdout
        assert vhost.queue_counts(DEAD)[0] == 3  # looking removed nothing

        replay = await asyncio.to_thread(dead_cli, vhost.amqp_url, "--replay", "--timeout", "30")
        assert replay.returncode == 1  # two could not be replayed, and say why
        assert f"replayed {late} (echo)" in replay.stdout
        assert f"kept {malformed} (echo): malformed" in replay.stdout
        assert f"kept {sync_late} (echo): a sync call" in replay.stdout
        # A reply queue other than direct reply-to is a durable one (SPEC 1.1): its owner was
        # told at once that the request expired; then the replayed request ran, afresh.
        told = replies.decode((await own.get(timeout=10)).body)
        assert told.error is not None and told.error.code == "expired"
        reply = await own.get(timeout=10)
        assert replies.decode(reply.body).result == {"late": True}
        assert reply.headers[names.HEADER_ATTEMPT] == 1
        assert vhost.queue_counts(DEAD)[0] == 2

        purge = await asyncio.to_thread(dead_cli, vhost.amqp_url, "--purge", "--reason",
                                        "malformed")
        assert purge.returncode == 0, purge.stdout
        assert f"purged {malformed}" in purge.stdout
        left = json.loads((await asyncio.to_thread(dead_cli, vhost.amqp_url, "--json")).stdout)
        assert [letter["id"] for letter in left] == [sync_late]


def test_a_missing_pool_is_a_clear_error_not_a_traceback(vhost: Vhost) -> None:
    result = dead_cli(vhost.amqp_url, "--json")  # no worker ever declared pool basic here
    assert result.returncode == 1
    assert "rpcfleet.dead.basic" in result.stderr and "Traceback" not in result.stderr


def test_a_dead_letter_says_who_waits_and_whether_it_can_be_replayed() -> None:
    def letter(reply_to: str | None, reason: str = "expired") -> DeadLetter:
        return DeadLetter.read(correlation_id="j1", method="echo", reply_to=reply_to,
                               headers={names.HEADER_DEAD_REASON: reason}, size=2)

    assert letter("amq.rabbitmq.reply-to.g1AAAA").waiter is Waiter.SYNC
    assert letter(names.REPLIES_QUEUE).waiter is Waiter.JOB
    assert letter("my-replies").waiter is Waiter.QUEUE
    assert letter(None).waiter is Waiter.NONE
    assert letter("my-replies").replay_refusal is None
    assert letter(None, "max_attempts").replay_refusal is None
    assert "final" in str(letter(names.REPLIES_QUEUE).replay_refusal)
    assert "malformed" in str(letter("my-replies", "malformed").replay_refusal)


def test_the_dead_letter_cli_reaches_a_cluster_whose_first_node_is_down(
    vhost: Vhost, start_worker: StartWorker
) -> None:
    """RPCFLEET_AMQP_URL lists the nodes: `rpcfleet dead` takes the first that answers, as
    gateways and workers do (it tried the first alone)."""
    start_worker()  # declares the pool's dead-letter queue
    down = vhost.amqp_url.replace(f":{urlsplit(vhost.amqp_url).port}/", ":1/")
    listed = dead_cli(f"{down},{vhost.amqp_url}", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert json.loads(listed.stdout) == []


def test_a_message_the_broker_dead_lettered_reads_its_reason_from_x_death() -> None:
    letter = DeadLetter.read(correlation_id="j1", method="echo", reply_to=None,
                             headers={"x-death": [{"reason": "expired", "count": 1}]}, size=0)
    assert letter.reason == "broker:expired"


def test_a_replay_starts_afresh_with_no_trace_of_its_death() -> None:
    dead = {names.HEADER_ATTEMPT: 3, names.HEADER_DEADLINE: 1, names.HEADER_DEAD_REASON: "x",
            names.HEADER_DEAD_DETAIL: "y", names.HEADER_DEAD_AT: 2, names.HEADER_POOL: "basic",
            "x-death": [], "x-custom": "kept"}
    assert replay_headers(dead, None) == {names.HEADER_ATTEMPT: 1, "x-custom": "kept"}
    assert replay_headers(dead, 99)[names.HEADER_DEADLINE] == 99


@pytest.mark.slow  # ~10 s: a quorum pool, three looks
async def test_looking_at_dead_letters_spends_none_of_their_deliveries(
    vhost: Vhost, start_worker: StartWorker
) -> None:
    """Issue 27, RabbitMQ 4.x semantics: from 4.0 a quorum queue drops a message returned 20
    times (before 4.3 every return counts). Only 3.10 runs here: a policy gives the dead-letter
    queue a limit of 2, so a listing that handed what it looked at back to the queue would lose
    every dead letter by the third look."""
    vhost.management("PUT", f"/api/policies/{vhost.name}/tiny-delivery-limit", {
        "pattern": r"^rpcfleet\.dead\.", "apply-to": "queues",
        "definition": {"delivery-limit": 2}})
    start_worker(queue_type="quorum")
    async with amqp_client(vhost.amqp_url) as client:
        sent = [await client.send("echo", body=b"{not json", reply_to=None) for _ in range(3)]
        await async_wait_for(lambda: asyncio.to_thread(lambda: vhost.queue_counts(DEAD)[0] == 3),
                             what="three dead letters")
    for look in range(3):  # what `rpcfleet dead` and GET /v1/pools/{pool}/dead do
        async with dead_letter_queue(vhost.amqp_url, "basic") as queue:
            assert [item.letter.id for item in await queue.take()] == sent, f"look {look}"
        assert vhost.queue_counts(DEAD)[:2] == (3, 0)
    purge = await asyncio.to_thread(dead_cli, vhost.amqp_url, "--purge", "--id", sent[1])
    assert purge.returncode == 0, purge.stdout
    left = json.loads((await asyncio.to_thread(dead_cli, vhost.amqp_url, "--json")).stdout)
    assert [letter["id"] for letter in left] == [sent[0], sent[2]]


@pytest.mark.slow
async def test_a_replay_the_broker_does_not_confirm_is_refused_in_seconds_never_a_hang(
    vhost: Vhost, start_worker: StartWorker
) -> None:
    """A broker blocked by a memory alarm confirms nothing: the replay is kept with its reason
    within the copy's bound, the dead letter stays, and the session ends (the letters it held
    return with its channel)."""
    import time

    from tests.support.rabbit import blocked_broker
    from transport.copies import COPY_CONFIRM_S
    from transport.deadletters import ReplayRefused

    start_worker()
    async with amqp_client(vhost.amqp_url) as client:
        sent = await client.send("echo", {"n": 1}, reply_to=None,  # expired: replayable
                                 deadline_ms=now_ms() - 1000)
    await async_wait_for(lambda: asyncio.to_thread(lambda: vhost.queue_counts(DEAD)[0] == 1),
                         what="the dead letter")
    async with asyncio.timeout(4 * COPY_CONFIRM_S + 20):
        async with dead_letter_queue(vhost.amqp_url, "basic") as queue:
            [item] = await queue.take()
            with blocked_broker(vhost):
                started = time.monotonic()
                with pytest.raises(ReplayRefused, match="did not confirm"):
                    await queue.replay(item, None)
                took = time.monotonic() - started
    assert item.letter.id == sent
    assert took < COPY_CONFIRM_S + 2, took
    await async_wait_for(lambda: asyncio.to_thread(lambda: vhost.queue_counts(DEAD)[0] >= 1),
                         what="the dead letter still there")


@pytest.mark.parametrize(("args", "said"), [
    (("--limit", "-1"), "0 or more"),  # it purged all but the newest
    (("--replay", "--timeout", "0"), "above 0"),  # it replayed requests already expired
    (("--replay", "--timeout", "inf"), "above 0"),  # an OverflowError
])
def test_the_dead_letter_command_refuses_bad_numbers_before_touching_anything(
    args: tuple[str, ...], said: str
) -> None:
    done = subprocess.run([*RPCFLEET, "dead", "basic", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
