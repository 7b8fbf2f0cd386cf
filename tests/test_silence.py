"""transport.silence: a connection that hears nothing from its peer for its allowed silence is
left; one that hears something is kept, whatever the event loop was doing. Real sockets on
loopback: the peer is a server that accepts and then says nothing (its kernel still acknowledges
what is sent to it, as a frozen broker's does), or one that sends a byte now and then."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from yarl import URL

from transport.silence import SilenceWatch, quiet_ms, silence_s


@contextmanager
def peer(chatter_every: float | None) -> Iterator[URL]:
    """A TCP server on loopback: silent, or sending a byte every `chatter_every` s."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while not stop.wait(chatter_every or 0.05):
                if chatter_every is not None:
                    try:
                        conn.sendall(b"\x08")
                    except OSError:
                        return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield URL(f"amqp://127.0.0.1:{server.getsockname()[1]}/")
    finally:
        stop.set()
        server.close()
        thread.join(5)


async def test_a_peer_that_says_nothing_is_left_after_the_allowed_silence() -> None:
    with peer(chatter_every=None) as url:
        _, writer = await SilenceWatch(0.6).create(url)
        started = time.monotonic()
        while not writer.transport.is_closing():
            assert time.monotonic() - started < 5, "the silent peer was never left"
            await asyncio.sleep(0.05)
        assert 0.6 <= time.monotonic() - started < 2.0


async def test_a_peer_that_talks_is_kept_even_if_the_loop_was_held_meanwhile() -> None:
    with peer(chatter_every=0.1) as url:
        _, writer = await SilenceWatch(0.6).create(url)
        # The loop held past the allowed silence, as by a long C call; the kernel heard meanwhile.
        time.sleep(1.0)  # noqa: ASYNC251 - holding the loop is the scenario
        await asyncio.sleep(1.5)  # a window of 2.5 allowed silences in which nothing may happen
        assert not writer.transport.is_closing()
        assert (quiet_ms(writer.get_extra_info("socket")) or 0) < 600
        writer.close()


def test_the_allowed_silence_is_two_heartbeats_and_none_without_heartbeats() -> None:
    assert silence_s(4) == 8 and silence_s(5) == 10
    assert silence_s(0) is None and silence_s(None) is None
