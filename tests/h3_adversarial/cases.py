"""Adversarial cases against ambit's HBONE/HTTP3 server. Each case is `async def case_*(srv, apps)`
returning a dict of observations; RSS in KiB from /proc/PID/status (VmRSS)."""

from __future__ import annotations

import asyncio
import collections
import time

from aioquic.buffer import encode_uint_var
from aioquic.quic.connection import QuicConnection

import harness as H
from harness import SERVER_IP, ECHO_PORT, FIREHOSE_PORT, UDP_PORT

H3_NAMES = {0x0: "NO_ERROR(quic)", 0x4: "STREAM_LIMIT_ERROR", 0x7: "FRAME_ENCODING_ERROR",
            0xA: "PROTOCOL_VIOLATION", 0x100: "H3_NO_ERROR", 0x101: "H3_GENERAL_PROTOCOL_ERROR",
            0x102: "H3_INTERNAL_ERROR", 0x104: "H3_CLOSED_CRITICAL_STREAM",
            0x105: "H3_FRAME_UNEXPECTED", 0x106: "H3_FRAME_ERROR", 0x107: "H3_EXCESSIVE_LOAD",
            0x108: "H3_ID_ERROR", 0x10B: "H3_REQUEST_REJECTED", 0x10C: "H3_REQUEST_CANCELLED",
            0x10D: "H3_REQUEST_INCOMPLETE", 0x10E: "H3_MESSAGE_ERROR", 0x10F: "H3_CONNECT_ERROR",
            0x33: "H3_DATAGRAM_ERROR"}


def name(code: int | None) -> str | None:
    return None if code is None else f"{code:#x} {H3_NAMES.get(code, '?')}"


def term(p: H.Peer) -> dict | None:
    t = p.terminated
    if t is None:
        return None
    return {"error_code": name(t.error_code), "frame_type": t.frame_type,
            "reason": t.reason_phrase}


class RssPeak:
    """Samples the server's RSS while a case runs (a background task; reads only)."""

    def __init__(self, srv: H.Server, every: float = 0.05):
        self.srv, self.every, self.peak, self._task = srv, every, 0, None

    async def _run(self):
        while True:
            self.peak = max(self.peak, self.srv.rss())
            await asyncio.sleep(self.every)

    def __enter__(self):
        self.peak = self.srv.rss()
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *a):
        self._task.cancel()
        self.peak = max(self.peak, self.srv.rss())


async def after_checks(srv: H.Server, apps: H.Apps, out: dict, log_from: int) -> dict:
    out["server_alive"] = srv.alive()
    if srv.alive():
        out["server_fds"] = srv.fds()
        out["tcp_tunnels_open_per_metrics"] = srv.tunnels_open()
    out["normal_connect_after"] = (await H.normal_connect())["ok"] if srv.alive() else False
    out["suspicious_log_lines"] = srv.bad_log_lines(log_from)[:10]
    return out


def send_headers_raw(p: H.Peer, sid: int, authority: str) -> None:
    """A CONNECT HEADERS frame on `sid`, bypassing aioquic's stream-limit bookkeeping."""
    p.h3.send_headers(sid, [(b":method", b"CONNECT"), (b":authority", authority.encode())])


# =============================================================================================
# Case 1: streams


async def case_stream_flood(srv: H.Server, apps: H.Apps, n_streams: int = 400) -> dict:
    """HEADERS (CONNECT to the echo app) on stream ids 0, 4, ... beyond the server's
    initial_max_streams_bidi: aioquic's own limit is lifted by raising its view of the peer's
    MAX_STREAMS, so STREAM frames for index >= limit go out."""
    log_from = len(srv.log_lines)
    before, acc0 = srv.rss(), apps.echo_accepted
    p = await H.open_peer()
    limit = p._quic._remote_max_streams_bidi
    p._quic._remote_max_streams_bidi = 1 << 40  # lie to ourselves about the peer's limit
    with RssPeak(srv) as peak:
        for i in range(n_streams):
            sid = p._quic.get_next_available_stream_id()
            send_headers_raw(p, sid, f"{SERVER_IP}:{ECHO_PORT}")
        p.transmit()
        closed = await p.wait_for(lambda: p.terminated is not None, 30)
    out = {"peer_sent": f"{n_streams} CONNECTs on streams 0..{4 * (n_streams - 1)} "
                        f"(server limit {limit})",
           "server_initial_max_streams_bidi": limit,
           "closed": closed, "close": term(p),
           "responses_200_before_close": sum(1 for s in p.headers if p.status(s) == "200"),
           "rss_kib": {"before": before, "peak": peak.peak}}
    p.abandon()
    # Every tunnel the server opened to the echo app before the close ends (access log line).
    made = apps.echo_accepted - acc0
    out["tunnels_opened_before_close"] = made
    out["app_sockets_all_closed"] = await app_wait(
        apps, lambda: apps.echo_closed >= apps.echo_accepted, 15)
    out["access_log_lines_for_them"] = srv.count_log(r"dst\.hbone_addr=127\.0\.55\.2:7 ", log_from)
    out["rss_kib"]["after"] = srv.rss()
    return await after_checks(srv, apps, out, log_from)


async def case_stream_far_beyond(srv: H.Server, apps: H.Apps) -> dict:
    """A single STREAM frame for a bidi stream id far beyond the limit (index 1_000_000)."""
    log_from = len(srv.log_lines)
    p = await H.open_peer()
    p._quic._remote_max_streams_bidi = 1 << 40
    sid = 4 * 1_000_000
    p._quic._local_next_stream_id_bidi = sid
    send_headers_raw(p, sid, f"{SERVER_IP}:{ECHO_PORT}")
    p.transmit()
    closed = await p.wait_for(lambda: p.terminated is not None, 15)
    out = {"peer_sent": f"HEADERS on stream {sid}", "closed": closed, "close": term(p)}
    p.abandon()
    return await after_checks(srv, apps, out, log_from)


async def _slowloris_conn(first_bytes: bytes, n: int | None = None) -> H.Peer:
    p = await H.open_peer()
    n = n if n is not None else p._quic._remote_max_streams_bidi
    for _ in range(n):
        sid = p._quic.get_next_available_stream_id()
        p._quic.send_stream_data(sid, first_bytes)
    p.transmit()
    # Every STREAM frame acknowledged by the server: a PING after them is acked after them.
    await asyncio.wait_for(p.ping(), 20)
    return p


async def case_slowloris(srv: H.Server, apps: H.Apps, conns: int = 20,
                         first_bytes: bytes = b"\x01") -> dict:
    """`conns` connections, each opening every allowed bidi stream with one byte (the start of
    a HEADERS frame header, so no HEADERS ever completes) and nothing more."""
    log_from = len(srv.log_lines)
    before = srv.rss()
    t0 = time.monotonic()
    with RssPeak(srv) as peak:
        peers = await asyncio.gather(*[_slowloris_conn(first_bytes) for _ in range(conns)])
        opened_at = time.monotonic()
        rss_all_open = srv.rss()
        per_conn = peers[0]._quic._remote_max_streams_bidi
        # The server gives up on each stream: RESET_STREAM (and STOP_SENDING) per stream.
        done = await asyncio.gather(*[
            p.wait_for(lambda p=p: len(p.resets) >= per_conn or p.terminated, 60) for p in peers])
    freed_after = time.monotonic() - opened_at
    codes = sorted({c for p in peers for c in p.resets.values()})
    stop_codes = sorted({c for p in peers for c in p.stops.values()})
    # Did the server hand the freed stream slots back (MAX_STREAMS)? Re-checked per packet.
    # quinn announces MAX_STREAMS only once more than 1/8 of the limit (25 of 200) is free, so
    # up to 25 freed slots per connection can stay unannounced until more streams end.
    slots_back = await asyncio.gather(*[
        p.wait_for(lambda p=p: p._quic._remote_max_streams_bidi >= 2 * per_conn - per_conn // 8, 15)
        for p in peers])
    max_streams_after = sorted({p._quic._remote_max_streams_bidi for p in peers})
    rss_streams_freed = srv.rss()
    still_open = sum(1 for p in peers if p.terminated is None)
    out = {"peer_sent": f"{conns} conns x {per_conn} streams, each stream only {first_bytes!r}",
           "all_streams_reset": all(done),
           "resets_per_conn": sorted({len(p.resets) for p in peers}),
           "reset_codes": [name(c) for c in codes], "stop_sending_codes": [name(c) for c in stop_codes],
           "seconds_until_reset_after_open": round(freed_after, 2),
           "max_streams_bidi_after": max_streams_after,
           "slots_returned_within_quinn_batching": all(slots_back),
           "connections_still_open_after_resets": still_open,
           "rss_kib": {"before": before, "all_open": rss_all_open, "peak": peak.peak,
                       "streams_freed": rss_streams_freed}}
    await asyncio.gather(*[p.close_and_wait() for p in peers])
    out["rss_kib"]["after_close"] = srv.rss()
    out["setup_seconds"] = round(opened_at - t0, 2)
    return await after_checks(srv, apps, out, log_from)


async def case_slowloris_trickle(srv: H.Server, apps: H.Apps, streams: int = 10,
                                 interval: float = 0.5) -> dict:
    """A HEADERS frame declaring 4000 bytes, then one byte every `interval` s on each stream:
    does a trickle keep the server waiting past its header timeout?"""
    log_from = len(srv.log_lines)
    p = await H.open_peer()
    sids = []
    for _ in range(streams):
        sid = p._quic.get_next_available_stream_id()
        p._quic.send_stream_data(sid, b"\x01" + encode_uint_var(4000) + b"\x00\x00")
        sids.append(sid)
    p.transmit()
    t0 = time.monotonic()

    async def trickle():
        while True:
            for sid in sids:
                if sid not in p.resets and sid not in p.stops:
                    p._quic.send_stream_data(sid, b"\x20")
            p.transmit()
            await asyncio.sleep(interval)  # pacing of the attack, not synchronization

    task = asyncio.ensure_future(trickle())
    done = await p.wait_for(lambda: all(s in p.resets for s in sids) or p.terminated, 60)
    task.cancel()
    out = {"peer_sent": f"{streams} streams: HEADERS declaring 4000 B, 1 byte per {interval}s",
           "all_reset": done, "reset_codes": sorted({name(c) for c in p.resets.values()}),
           "seconds_until_reset": round(time.monotonic() - t0, 2), "close": term(p)}
    await p.close_and_wait()
    return await after_checks(srv, apps, out, log_from)


# =============================================================================================
# Case 2: CONNECT-UDP datagrams and capsules

LIE = b"\xffLIE\xff"  # a DATAGRAM payload starting with this gets a lying length field


class LyingQuic(QuicConnection):
    """Writes a DATAGRAM frame whose length field is LIE's next 8 bytes (big endian), followed
    by the rest of the payload: the frame claims more bytes than the packet holds."""

    def _write_datagram_frame(self, builder, data, frame_type):
        if not data.startswith(LIE):
            return super()._write_datagram_frame(builder, data, frame_type)
        declared = int.from_bytes(data[len(LIE):len(LIE) + 8], "big")
        body = data[len(LIE) + 8:]
        buf = builder.start_frame(frame_type, capacity=1 + 8 + len(body))
        buf.push_uint_var(declared)
        buf.push_bytes(body)
        return True


async def open_flow(p: H.Peer, timeout: float = 10) -> int:
    sid = p.connect_udp(SERVER_IP, UDP_PORT)
    await p.wait_for(lambda: sid in p.headers or sid in p.resets or p.terminated, timeout)
    if p.status(sid) != "200":
        raise RuntimeError(f"flow refused: {p.status(sid)} reset={p.resets.get(sid)}")
    return sid


def all_acked(p: H.Peer, sid: int) -> bool:
    s = p._quic._streams.get(sid)
    return s is None or s.sender._buffer_start == s.sender._buffer_stop


async def app_wait(apps: H.Apps, pred, timeout: float) -> bool:
    return await asyncio.get_running_loop().run_in_executor(None, apps.wait, pred, timeout)


async def sentinel(p: H.Peer, apps: H.Apps, sid: int, tries: int = 5, via_capsule: bool = False) -> bool:
    """A small datagram that must reach the app: proves the flow is alive and, since one flow's
    datagrams are relayed in order, that everything sent before it was handled."""
    tag = b"SENTINEL-%d" % time.monotonic_ns()
    for _ in range(tries):
        if via_capsule:
            try:
                p.send_data(sid, b"\x00" + encode_uint_var(1 + len(tag)) + b"\x00" + tag)
            except Exception:  # aioquic refuses: the server stopped the stream
                return False
        else:
            p.h3.send_datagram(sid, b"\x00" + tag)
            p.transmit()
        if await app_wait(apps, lambda: apps.udp_sizes[len(tag)] > 0, 2):
            return True
        if via_capsule:
            return False
    return False


async def case_datagram_sizes(srv: H.Server, apps: H.Apps) -> dict:
    """DATAGRAM frames of growing size in ever larger UDP packets (aioquic's packet size raised
    to 65000 after the handshake), then one whose length field claims 70000 bytes (more than
    the server's max_datagram_frame_size 65535 and than the packet)."""
    log_from = len(srv.log_lines)
    before = srv.rss()
    apps.udp_echo = False
    p = await H.open_peer(quic_cls=LyingQuic)
    advertised = p._quic._remote_max_datagram_frame_size
    sid = await open_flow(p)
    p._quic._max_datagram_size = 65000
    p._quic._loss._cc.congestion_window = 1 << 24  # let one huge packet go at once
    sizes = [1000, 1400, 1500, 4000, 9000, 16000, 32000, 60000, 64900]
    arrived = {}
    for n in sizes:
        apps.udp_sizes.clear()
        p.h3.send_datagram(sid, b"\x00" + bytes(n))
        p.transmit()
        got = await app_wait(apps, lambda: apps.udp_sizes[n] > 0, 3)
        arrived[n] = got
    alive_before_lie = await sentinel(p, apps, sid)
    with RssPeak(srv) as peak:
        p.send_datagram_raw(LIE + (70000).to_bytes(8, "big") + encode_uint_var(sid // 4) + b"\x00" + b"z" * 100)
        p.transmit()
        closed = await p.wait_for(lambda: p.terminated is not None, 10)
    out = {"server_max_datagram_frame_size": advertised,
           "note": "a frame above 65535 does not fit a UDP/IPv4 datagram (65507 B): only a lying length can claim it",
           "payload_sizes_delivered_to_app": arrived,
           "flow_alive_after_sizes": alive_before_lie,
           "lying_length_70000": {"closed": closed, "close": term(p)},
           "rss_kib": {"before": before, "peak": peak.peak, "after": srv.rss()}}
    p.abandon()
    return await after_checks(srv, apps, out, log_from)


async def case_datagram_flood(srv: H.Server, apps: H.Apps, n: int = 200_000, size: int = 32) -> dict:
    """`n` small datagrams on one flow as fast as aioquic sends them (congestion window lifted)."""
    log_from = len(srv.log_lines)
    apps.udp_echo = False
    before = srv.rss()
    p = await H.open_peer()
    sid = await open_flow(p)
    base = apps.udp_received
    t0 = time.monotonic()
    with RssPeak(srv) as peak:
        for i in range(n):
            p.h3.send_datagram(sid, b"\x00" + i.to_bytes(8, "big") + bytes(size - 8))
            if i % 2000 == 0:
                p._quic._loss._cc.congestion_window = 1 << 26
                p.transmit()
                await asyncio.sleep(0)  # let received ACKs in
        p.transmit()
        drained = await p.wait_for(lambda: not p._quic._datagrams_pending or p.terminated, 120)
        send_s = time.monotonic() - t0
        alive = await sentinel(p, apps, sid)
    received = apps.udp_received - base - (1 if alive else 0)
    ping_ok = p.terminated is None and await asyncio.wait_for(p.ping(), 10) is None
    out = {"peer_sent": f"{n} datagrams of {size} B payload in {send_s:.1f}s",
           "aioquic_queue_drained": drained,
           "delivered_to_app": received, "dropped": n - received,
           "flow_alive_after": alive, "connection_alive_after": ping_ok, "close": term(p),
           "rss_kib": {"before": before, "peak": peak.peak, "after": srv.rss()}}
    await p.close_and_wait()
    out["rss_kib"]["after_close"] = srv.rss()
    return await after_checks(srv, apps, out, log_from)


async def case_datagram_bad_ids(srv: H.Server, apps: H.Apps, out_of_range: bool = True) -> dict:
    """HTTP/3 datagrams naming streams that are not flows: a TCP tunnel's stream, an unopened
    stream, one beyond MAX_STREAMS, a non-zero context, an empty datagram and one with only a
    quarter id; then, with `out_of_range`, quarter ids >= 2^60 (RFC 9297 §2.1:
    H3_DATAGRAM_ERROR, which closes the connection)."""
    log_from = len(srv.log_lines)
    apps.udp_echo = False
    p = await H.open_peer()
    tcp = p.connect_tcp(f"{SERVER_IP}:{ECHO_PORT}")          # stream 0
    await p.wait_for(lambda: tcp in p.headers, 10)
    sid = await open_flow(p)                                 # stream 4
    base = apps.udp_received
    probes = {
        "tcp_tunnel_stream": encode_uint_var(tcp // 4) + b"\x00to-tcp",
        "unopened_stream_4000": encode_uint_var(1000) + b"\x00unopened",
        "beyond_max_streams_4M": encode_uint_var(1_000_000) + b"\x00beyond",
        "flow_context_1": encode_uint_var(sid // 4) + b"\x01ctx1",
        "empty": b"",
        "quarter_only": encode_uint_var(sid // 4),
    }
    if out_of_range:
        probes["quarter_2^60"] = encode_uint_var(1 << 60) + b"\x00q60"
        probes["quarter_2^62-1"] = encode_uint_var((1 << 62) - 1) + b"\x00q62"
    for payload in probes.values():
        p.send_datagram_raw(payload)
    p.transmit()
    alive = await sentinel(p, apps, sid)
    stray = apps.udp_received - base - (1 if alive else 0)
    # The TCP tunnel on the same connection still echoes.
    p.send_data(tcp, b"still-here")
    tcp_ok = await p.wait_for(lambda: bytes(p.data[tcp]) == b"still-here" or p.terminated, 10)
    out = {"peer_sent": list(probes), "connection_closed": p.terminated is not None,
           "close": term(p), "stray_datagrams_at_app": stray, "flow_alive_after": alive,
           "tcp_tunnel_ok_after": tcp_ok}
    await p.close_and_wait()
    return await after_checks(srv, apps, out, log_from)


async def _capsule_probe(apps: H.Apps, raw_capsule: bytes, then_sentinel: bool = True) -> dict:
    """A fresh flow; `raw_capsule` in one DATA frame on its stream; what became of the flow."""
    p = await H.open_peer()
    sid = await open_flow(p)
    before_sizes = dict(apps.udp_sizes)
    p.send_data(sid, raw_capsule)
    await p.wait_for(lambda: all_acked(p, sid) or sid in p.resets or p.terminated, 15)
    alive = await sentinel(p, apps, sid, via_capsule=True) if then_sentinel else None
    # A flow the server gave up on ends with RESET_STREAM / STOP_SENDING: await it.
    await p.wait_for(lambda: sid in p.resets or sid in p.ended or p.terminated or alive, 5)
    new_sizes = {k: v - before_sizes.get(k, 0) for k, v in apps.udp_sizes.items()
                 if v - before_sizes.get(k, 0) > 0 and not 9 < k < 40}
    r = {"flow_alive_after": alive, "stream_reset_by_server": name(p.resets.get(sid)),
         "stop_sending": name(p.stops.get(sid)), "stream_ended": sid in p.ended,
         "connection_close": term(p), "app_got_sizes": new_sizes}
    await p.close_and_wait()
    return r


def datagram_capsule(length: int, body: bytes) -> bytes:
    return b"\x00" + encode_uint_var(length) + body


async def case_capsules(srv: H.Server, apps: H.Apps) -> dict:
    """DATAGRAM capsules on a flow's stream: declared 2^60, just over 65535, the reader's limit
    (65551) and one past it, and an unknown capsule of 2^60 followed by 32 MiB."""
    log_from = len(srv.log_lines)
    apps.udp_echo = False
    before = srv.rss()
    out: dict = {}
    with RssPeak(srv) as peak:
        out["len_2^60_datagram_capsule"] = await _capsule_probe(
            apps, datagram_capsule(1 << 60, b"\x00" + b"a" * 1000))
        out["len_65536_full_body"] = await _capsule_probe(
            apps, datagram_capsule(65536, b"\x00" + b"b" * 65535))
        out["len_65508_full_body(payload 65507)"] = await _capsule_probe(
            apps, datagram_capsule(65508, b"\x00" + b"c" * 65507))
        out["len_65551_full_body"] = await _capsule_probe(
            apps, datagram_capsule(65551, b"\x00" + b"d" * 65550))
        out["len_65552_full_body"] = await _capsule_probe(
            apps, datagram_capsule(65552, b"\x00" + b"e" * 65551))
        out["len_65536_truncated_then_fin"] = await _fin_inside_capsule(apps)
        out["unknown_capsule_2^60_then_32MiB"] = await _unknown_capsule_flood(srv, apps)
    out["rss_kib"] = {"before": before, "peak": peak.peak, "after": srv.rss()}
    return await after_checks(srv, apps, out, log_from)


async def _fin_inside_capsule(apps: H.Apps) -> dict:
    """A DATAGRAM capsule declaring 65536 bytes, 100 sent, then FIN."""
    p = await H.open_peer()
    sid = await open_flow(p)
    p.send_data(sid, datagram_capsule(65536, b"\x00" + b"f" * 99), end=True)
    done = await p.wait_for(lambda: sid in p.resets or sid in p.ended or p.terminated, 15)
    r = {"server_answered": done, "stream_reset_by_server": name(p.resets.get(sid)),
         "stream_ended": sid in p.ended, "connection_close": term(p)}
    await p.close_and_wait()
    return r


async def _unknown_capsule_flood(srv: H.Server, apps: H.Apps, total: int = 32 << 20) -> dict:
    p = await H.open_peer()
    sid = await open_flow(p)
    rss0 = srv.rss()
    p.send_data(sid, b"\x17" + encode_uint_var(1 << 60))
    chunk = b"\x00" * (256 << 10)
    sent = 0
    peak = rss0
    t0 = time.monotonic()
    while sent < total and not p.terminated and sid not in p.resets:
        p.send_data(sid, chunk)
        sent += len(chunk)
        # aioquic buffers whatever is written: wait for the server's ACKs (it read the bytes).
        await p.wait_for(lambda: all_acked(p, sid) or p.terminated or sid in p.resets, 30)
        peak = max(peak, srv.rss())
    # Datagrams still flow beside a stream that is skipping.
    alive = await sentinel(p, apps, sid)
    r = {"sent_bytes": sent, "seconds": round(time.monotonic() - t0, 1),
         "stream_reset_by_server": name(p.resets.get(sid)), "connection_close": term(p),
         "datagrams_still_flow": alive, "rss_kib": {"before": rss0, "peak": peak}}
    await p.close_and_wait()
    return r


# =============================================================================================
# Case 3: a tunnel whose client never reads


class StallQuic(QuicConnection):
    """Never raises MAX_STREAM_DATA or MAX_DATA while `stall` is set (MAX_STREAMS still go)."""
    stall = True

    def _write_stream_limits(self, builder, space, stream):
        if not self.stall:
            super()._write_stream_limits(builder, space, stream)

    def _write_connection_limits(self, builder, space):
        md = self._local_max_data
        used = md.used
        if self.stall:
            md.used = 0  # hides consumption: no doubling, no MAX_DATA
        try:
            super()._write_connection_limits(builder, space)
        finally:
            md.used = used


class DeafPeer(H.Peer):
    """Stops processing (and so acknowledging) anything from the server once `deaf` is set."""
    deaf = False
    dropped = 0

    def datagram_received(self, data, addr):
        if self.deaf:
            self.dropped += 1
            return
        super().datagram_received(data, addr)


async def _firehose_tunnels(apps: H.Apps, p: H.Peer, n: int) -> list[tuple[int, dict]]:
    """`n` CONNECTs to the firehose on `p`, done when the app has accepted all `n` (a response
    may itself be stuck behind a stalled connection window, so it is not awaited)."""
    k = len(apps.firehose_conns)
    sids = [p.connect_tcp(f"{SERVER_IP}:{FIREHOSE_PORT}") for _ in range(n)]
    ok = await app_wait(apps, lambda: len(apps.firehose_conns) >= k + n, 20)
    assert ok, f"app accepted {len(apps.firehose_conns) - k} of {n}"
    return list(zip(sids, apps.firehose_conns[k:k + n]))


async def case_stalled_flow(srv: H.Server, apps: H.Apps, hold_alive: float = 25.0) -> dict:
    """CONNECT to the firehose (256 MiB); the client never extends MAX_STREAM_DATA / MAX_DATA
    (1 MiB each). Held with the client alive (it acks the server's keep-alives) for
    `hold_alive` s, longer than the server's 20 s idle timeout; then the client vanishes."""
    log_from = len(srv.log_lines)
    before = srv.rss()
    p = await H.open_peer(quic_cls=StallQuic)
    window = p._quic._local_max_data.value
    [(sid, rec)] = await _firehose_tunnels(apps, p, 1)
    with RssPeak(srv) as peak:
        filled = await p.wait_for(lambda: len(p.data[sid]) >= window - 4096 or p.terminated, 20)
        got = len(p.data[sid])
        sent_at_fill = rec["sent"]
        # Observation window: the stall is a lasting state, nothing to await.
        await asyncio.sleep(hold_alive)
        rss_stalled = srv.rss()
    out = {"client_window_bytes": window, "window_filled": filled, "client_received": got,
           "app_sent_at_fill": sent_at_fill, "app_sent_after_hold": rec["sent"],
           f"server_closed_tunnel_during_{hold_alive:.0f}s_alive_stall":
               sid in p.resets or p.terminated is not None,
           "rss_kib": {"before": before, "stalled": rss_stalled, "peak": peak.peak}}
    # The client vanishes without CONNECTION_CLOSE: the server's idle timeout must free it.
    t0 = time.monotonic()
    p.abandon()
    freed = await app_wait(apps, lambda: rec["closed"], 60)
    out["after_client_vanished"] = {"app_socket_closed": freed,
                                    "seconds": round(time.monotonic() - t0, 1),
                                    "app_error": rec["error"], "app_sent_total": rec["sent"]}
    await srv.wait_log(r"dst\.hbone_addr=127\.0\.55\.2:9000", count=1, since=log_from, timeout=10)
    out["access_log"] = [l.split("error=")[-1].strip() for l in srv.log_lines[log_from:]
                         if "127.0.55.2:9000" in l]
    out["rss_kib"]["after"] = srv.rss()
    return await after_checks(srv, apps, out, log_from)


async def case_unacked_big_window(srv: H.Server, apps: H.Apps, conns: int = 4,
                                  hold: float = 45.0) -> dict:
    """The client grants a huge window (64 MiB per stream, 1 GiB per connection) to a firehose
    tunnel, then processes (and acknowledges) nothing more, only sending a PING every 2 s so the
    server's idle timer never fires: the server's unacknowledged data is bounded by quinn's
    send_window alone."""
    log_from = len(srv.log_lines)
    before = srv.rss()
    cfg = lambda: H.client_config(max_stream_data=64 << 20, max_data=1 << 30)
    samples = []
    with RssPeak(srv) as peak:
        peers = [await H.open_peer(peer_cls=DeafPeer, cfg=cfg()) for _ in range(conns)]
        tunnels = [(await _firehose_tunnels(apps, p, 1))[0] for p in peers]
        for p in peers:
            p.deaf = True

        async def keepalive():
            uid = 0
            while True:
                for p in peers:
                    uid += 1
                    p._quic.send_ping(uid)
                    # aioquic's own idle timer (min of both idle timeouts) would end a peer
                    # that hears nothing: keep it from firing.
                    p._quic._close_at = asyncio.get_running_loop().time() + 60
                    p.transmit()
                await asyncio.sleep(2)  # pacing of the keep-alive, not synchronization
        ka = asyncio.ensure_future(keepalive())
        t0 = time.monotonic()
        while time.monotonic() - t0 < hold:  # observation window: sample RSS over time
            samples.append((round(time.monotonic() - t0), srv.rss(), sum(r["sent"] for _, r in tunnels)))
            await asyncio.sleep(5)
        ka.cancel()
    recs = [r for _, r in tunnels]
    out = {"conns": conns, "peer": "64 MiB stream / 1 GiB conn window, deaf after 200 OK, PINGs every 2 s",
           "samples_(t_s,rss_kib,app_bytes_pushed)": samples,
           "client_received_before_deaf": [sum(map(len, p.data.values())) for p in peers],
           "client_terminated_during_hold": [p.terminated is not None for p in peers],
           "server_closed_during_hold": [r["closed"] for _, r in tunnels],
           "rss_kib": {"before": before, "peak": peak.peak}}
    t1 = time.monotonic()
    for p in peers:
        p.abandon()
    freed = await app_wait(apps, lambda: all(r["closed"] for r in recs), 90)
    out["after_client_vanished"] = {"app_sockets_closed": freed,
                                    "seconds": round(time.monotonic() - t1, 1)}
    out["rss_kib"]["after"] = srv.rss()
    return await after_checks(srv, apps, out, log_from)


# =============================================================================================
# Leak check: the same attack in rounds; retained-but-reused memory plateaus, a leak climbs.


async def case_rapid_reset(srv: H.Server, apps: H.Apps, n: int = 20_000) -> dict:
    """CONNECT HEADERS immediately followed by RESET_STREAM + STOP_SENDING, `n` times on one
    connection, within the server's MAX_STREAMS (aioquic waits for credit): HTTP/2's rapid
    reset (CVE-2023-44487) over HTTP/3."""
    log_from = len(srv.log_lines)
    before, cpu0, acc0 = srv.rss(), srv.cpu_seconds(), apps.echo_accepted
    p = await H.open_peer()
    t0 = time.monotonic()
    opened = 0
    with RssPeak(srv) as peak:
        while opened < n and not p.terminated:
            # Open as many as the server's credit allows right now, then wait for more.
            limit = p._quic._remote_max_streams_bidi
            while opened < n and p._quic._local_next_stream_id_bidi // 4 < limit:
                sid = p._quic.get_next_available_stream_id()
                send_headers_raw(p, sid, f"{SERVER_IP}:{ECHO_PORT}")
                p._quic.reset_stream(sid, 0x10C)
                p._quic.stop_stream(sid, 0x10C)
                opened += 1
            p.transmit()
            await p.wait_for(lambda: p._quic._remote_max_streams_bidi > limit or p.terminated, 20)
        await asyncio.wait_for(p.ping(), 10) if not p.terminated else None
    secs = time.monotonic() - t0
    settled = await srv.wait_log("connection (complete|failed).*127\\.0\\.55\\.2:7", 0, log_from, 1)
    out = {"peer_sent": f"{opened} x (HEADERS, RESET_STREAM, STOP_SENDING) in {secs:.1f}s",
           "streams_per_second": round(opened / secs), "close": term(p),
           "app_connections_made": apps.echo_accepted - acc0,
           "server_cpu_seconds": round(srv.cpu_seconds() - cpu0, 2),
           "access_log_lines": srv.count_log("127\\.0\\.55\\.2:7 ", log_from),
           "rss_kib": {"before": before, "peak": peak.peak}}
    await p.close_and_wait()
    out["rss_kib"]["after"] = srv.rss()
    return await after_checks(srv, apps, out, log_from)


async def _open_flows(p: H.Peer, n: int, timeout: float = 20) -> list[int]:
    sids = [p.connect_udp(SERVER_IP, UDP_PORT) for _ in range(n)]
    await p.wait_for(lambda: all(s in p.headers or s in p.resets for s in sids) or p.terminated, timeout)
    return sids


async def case_fd_exhaustion(srv: H.Server, apps: H.Apps) -> dict:
    """A second server with RLIMIT_NOFILE 300; 2 connections x 200 CONNECT-UDP flows (a UDP
    socket each) run it out of descriptors. Then: refused how, busy-looping, recovers?"""
    s2 = H.Server()  # same CA and client certificate
    s2.prefix = ["prlimit", "--nofile=300:300", "--"]
    srv.stop()  # the same address and port: the main server yields it for this case
    s2.start()
    try:
        apps.udp_echo = False
        peers = [await H.open_peer() for _ in range(2)]
        flows = [await _open_flows(p, 200) for p in peers]
        statuses = collections.Counter(p.status(s) for p, fl in zip(peers, flows) for s in fl)
        cpu0, t0 = s2.cpu_seconds(), time.monotonic()
        await asyncio.sleep(3)  # observation window: CPU while at the descriptor limit
        cpu_at_limit = (s2.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        fds_at_limit = s2.fds()
        for p in peers:
            await p.close_and_wait()
        n_ok = statuses.get("200", 0)
        await s2.wait_log("protocol=udp", n_ok, 0, 30)
        ok_after = (await H.normal_connect())["ok"]
        out = {"statuses": dict(statuses), "fds_at_limit": fds_at_limit,
               "server_cpu_share_at_limit": round(cpu_at_limit, 3),
               "refusal_reasons": collections.Counter(
                   l.split("reason=")[-1].strip() for l in s2.log_lines if "refused" in l),
               "fds_after": s2.fds(), "normal_connect_after": ok_after, "server_alive": s2.alive(),
               "suspicious_log_lines": s2.bad_log_lines()[:10]}
    finally:
        s2.stop()
        srv.start()
    return out

