"""Noticing a broker node that went silent (powered off, cut off, frozen: no reset, no answer).

The broker sends a heartbeat every heartbeat / 2 s whatever else it does (a memory alarm stops
it reading from publishers, not sending to them). The kernel knows when data last arrived on a
socket (`TCP_INFO`, `tcpi_last_data_recv`), so each connection's socket is watched there: when
nothing arrived for `silence_s` (two heartbeats: four of the broker's), the watch aborts the
socket and the robust connection moves to the next node. aiormq's own check waits for
(heartbeat + 1) x 3 s.

Read from the kernel, the watch does not depend on the event loop having run: a consumer whose
loop was held by a long C call finds the heartbeats the kernel received meanwhile, not a
silence. And it is a silence of the broker's process, not only of its host: a node whose kernel
still acknowledges packets but whose VM is frozen is left too (`TCP_USER_TIMEOUT` would not see
it, and would cut a connection the broker has blocked under a memory alarm: a zero window that
lasts).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

from aiormq.connection import TCPTransportFactory, TLSTransportFactory, TransportFactory
from yarl import URL

log = logging.getLogger("rpcfleet.transport")

_TCP_INFO = getattr(socket, "TCP_INFO", None)  # Linux
_TCP_INFO_SIZE = 104
_LAST_DATA_RECV = struct.Struct("=I")  # struct tcp_info: 8 bytes of u8 fields, then u32s
_LAST_DATA_RECV_OFFSET = 52  # rto, ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans,
#                              fackets, last_data_sent, last_ack_sent, then last_data_recv
CHECKS_PER_SILENCE = 4  # the watch looks this often within one allowed silence


def silence_s(heartbeat: float | None) -> float | None:
    """How long a connection of this heartbeat (seconds) may hear nothing: two heartbeats; None
    without one (heartbeat 0: the broker sends nothing to an idle connection)."""
    return heartbeat * 2 if heartbeat else None


def quiet_ms(sock: Any) -> int | None:
    """Milliseconds since data last arrived on `sock`, from the kernel; None where it cannot
    say (not Linux, or the socket is closed)."""
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
    except (OSError, ValueError):
        return None
    if len(info) < _LAST_DATA_RECV_OFFSET + _LAST_DATA_RECV.size:
        return None
    return int(_LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_OFFSET)[0])


class SilenceWatch(TransportFactory):
    """aiormq's transport (plain or TLS, as the URL says), its socket watched for silence."""

    def __init__(self, silence_s: float) -> None:
        self.silence_s = silence_s
        self._watches: set[asyncio.Task[None]] = set()  # one per open socket

    async def create(self, url: URL, **kwargs: Any
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        inner = TLSTransportFactory() if url.scheme == "amqps" else TCPTransportFactory()
        reader, writer = await inner.create(url, **kwargs)
        sock = writer.get_extra_info("socket")
        if sock is not None and quiet_ms(sock) is not None:
            watch = asyncio.ensure_future(self._watch(writer.transport, sock, url))
            self._watches.add(watch)
            watch.add_done_callback(self._watches.discard)
        return reader, writer

    async def _watch(self, transport: asyncio.WriteTransport, sock: Any, url: URL) -> None:
        limit_ms = self.silence_s * 1000
        while not transport.is_closing():
            await asyncio.sleep(self.silence_s / CHECKS_PER_SILENCE)
            quiet = quiet_ms(sock)
            if quiet is not None and quiet > limit_ms and not transport.is_closing():
                log.warning("nothing heard from the broker at %s:%s for %.1f s: leaving it",
                            url.host, url.port, quiet / 1000)
                transport.abort()  # aiormq sees the connection lost; the robust one moves on
                return
