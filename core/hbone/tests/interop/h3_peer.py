#!/usr/bin/env python3
"""An independent HBONE-over-HTTP/3 peer built on aioquic (no ambit code).

Client modes (against an ambit server):
  echo SIZE...   One CONNECT per size on one QUIC connection: send SIZE pseudo-random bytes,
                 half-close, expect them echoed back byte for byte.
  malformed      A GET, a CONNECT with :scheme and :path, and a CONNECT without :authority must
                 each be answered 400 (or reset); a valid CONNECT on the same connection then
                 still echoes.
  untrusted      Present a certificate the server does not trust: the handshake must fail.
  truncated      CONNECT, then 10 bytes of a DATA frame that announced 100, then a reset with
                 H3_NO_ERROR: the server must not take the tunnel as complete.
  udp            CONNECT-UDP (RFC 9298) to --authority's address: send datagrams of several
                 sizes as HTTP/3 datagrams (RFC 9297), expect each echoed back.
Server mode:
  server         Serve HTTP/3 CONNECT on --listen with mutual TLS: answer 200 and echo (target
                 ports 401 and 503 answer that status), print one line per tunnel. CONNECT-UDP
                 flows echo each datagram.

The peer's SPIFFE identity is checked by hand (URI SAN and signature by the CA), as HBONE
identities are URI SANs that hostname checks cannot express.
"""
import argparse
import asyncio
import ssl
import sys

from aioquic.asyncio import connect, serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, DatagramReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamReset
from aioquic import tls as aioquic_tls
from cryptography import x509

CHUNK = 64 * 1024


def payload(size, seed):
    """Deterministic bytes, different per seed (not the Rust xorshift: any fixed pattern)."""
    block = bytes((i * 131 + seed * 17) & 0xFF for i in range(4096))
    reps = size // len(block) + 1
    return (block * reps)[:size]


def check_peer(quic, ca_path, expect_id):
    """The peer's leaf was issued by our CA and names `expect_id` (if given)."""
    leaf = quic.tls._peer_certificate
    if leaf is None:
        raise RuntimeError("peer sent no certificate")
    with open(ca_path, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    leaf.verify_directly_issued_by(ca)
    uris = leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.UniformResourceIdentifier)
    if expect_id and expect_id not in uris:
        raise RuntimeError(f"peer identity {uris} is not {expect_id}")
    return uris[0] if uris else ""


class Peer(QuicConnectionProtocol):
    """Routes HTTP/3 events to one queue per request stream."""

    def __init__(self, *args, on_request=None, **kwargs):
        super().__init__(*args, **kwargs)
        # aioquic sends SETTINGS_H3_DATAGRAM only with its WebTransport switch on.
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.queues = {}
        self.on_request = on_request
        self.terminated = asyncio.get_event_loop().create_future()

    def queue(self, stream_id):
        return self.queues.setdefault(stream_id, asyncio.Queue())

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            if not self.terminated.done():
                self.terminated.set_result(event)
        if isinstance(event, StreamReset):
            self.queue(event.stream_id).put_nowait(("reset", event.error_code))
        for e in self.h3.handle_event(event):
            if isinstance(e, HeadersReceived):
                if self.on_request and e.stream_id not in self.queues:
                    q = self.queue(e.stream_id)
                    asyncio.ensure_future(self.on_request(self, e, q))
                else:
                    self.queue(e.stream_id).put_nowait(("headers", e.headers, e.stream_ended))
            elif isinstance(e, DataReceived):
                self.queue(e.stream_id).put_nowait(("data", e.data, e.stream_ended))
            elif isinstance(e, DatagramReceived):
                self.queue(e.stream_id).put_nowait(("dgram", e.data))

    def send(self, stream_id, data, end):
        for i in range(0, len(data), CHUNK):
            last = i + CHUNK >= len(data)
            self.h3.send_data(stream_id, data[i : i + CHUNK], end_stream=end and last)
        if not data:
            self.h3.send_data(stream_id, b"", end_stream=end)
        self.transmit()


async def read_body(q):
    """Collects DATA until the end of the stream; returns (bytes, reset_code or None)."""
    body = bytearray()
    while True:
        kind, *rest = await q.get()
        if kind == "reset":
            return bytes(body), rest[0]
        if kind == "data":
            body += rest[0]
            if rest[1]:
                return bytes(body), None
        if kind == "headers" and rest[1]:
            return bytes(body), None


async def request(peer, headers):
    """Sends a request; returns ('status', code, q) or ('reset', code, q)."""
    sid = peer._quic.get_next_available_stream_id()
    q = peer.queue(sid)
    peer.h3.send_headers(sid, headers, end_stream=False)
    peer.transmit()
    kind, *rest = await q.get()
    if kind == "reset":
        return "reset", rest[0], sid, q
    status = dict(rest[0]).get(b":status", b"?").decode()
    return "status", status, sid, q


async def echo_once(peer, authority, size, seed):
    status = await request(peer, [(b":method", b"CONNECT"), (b":authority", authority)])
    if status[:2] != ("status", "200"):
        raise RuntimeError(f"CONNECT answered {status[:2]}")
    _, _, sid, q = status
    data = payload(size, seed)
    peer.send(sid, data, end=True)
    back, reset = await read_body(q)
    if reset is not None:
        raise RuntimeError(f"tunnel reset with {reset:#x} after {len(back)} bytes")
    if back != data:
        raise RuntimeError(f"echo differs: sent {len(data)} got {len(back)}")
    print(f"echo ok: {size} bytes", flush=True)


UDP_PATH = "/.well-known/masque/udp/{}/{}/"


async def udp_flow(peer, authority):
    """CONNECT-UDP to `authority` (the target): datagrams out and back."""
    host, port = authority.rsplit(":", 1)
    headers = [
        (b":method", b"CONNECT"), (b":protocol", b"connect-udp"), (b":scheme", b"https"),
        (b":authority", b"hbone"), (b":path", UDP_PATH.format(host, port).encode()),
        (b"capsule-protocol", b"?1"),
    ]
    status = await request(peer, headers)
    if status[:2] != ("status", "200"):
        raise RuntimeError(f"CONNECT-UDP answered {status[:2]}")
    _, _, sid, q = status
    sizes = [1, 100, 1000]
    for i, n in enumerate(sizes):
        # Context id 0, then the UDP payload (RFC 9298 section 5).
        peer.h3.send_datagram(sid, b"\x00" + payload(n, i + 1))
    peer.transmit()
    want = {payload(n, i + 1) for i, n in enumerate(sizes)}
    got = set()
    while got != want:
        kind, *rest = await asyncio.wait_for(q.get(), 10)
        if kind != "dgram":
            raise RuntimeError(f"unexpected {kind} on the flow")
        if not rest[0].startswith(b"\x00"):
            raise RuntimeError("datagram without context id 0")
        got.add(rest[0][1:])
    print(f"udp ok: {len(sizes)} datagrams", flush=True)
    peer.h3.send_data(sid, b"", end_stream=True)
    peer.transmit()


def client_config(args):
    c = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
    c.max_datagram_frame_size = 65536
    c.load_cert_chain(args.cert, args.key)
    c.max_data = 16 * 1024 * 1024
    c.max_stream_data = 4 * 1024 * 1024
    return c


async def run_client(args):
    host, port = args.server.rsplit(":", 1)
    auth = args.authority.encode()
    try:
        async with connect(host, int(port), configuration=client_config(args),
                           create_protocol=Peer, wait_connected=True) as peer:
            if args.mode == "untrusted":
                await asyncio.wait_for(peer.terminated, 10)
                print("refused ok: server closed the connection", flush=True)
                return
            who = check_peer(peer._quic, args.ca, args.expect_id)
            print(f"tls ok: peer {who}", flush=True)
            if args.mode == "udp":
                await udp_flow(peer, args.authority)
            elif args.mode == "truncated":
                status = await request(peer, [(b":method", b"CONNECT"), (b":authority", auth)])
                if status[:2] != ("status", "200"):
                    raise RuntimeError(f"CONNECT answered {status[:2]}")
                sid = status[2]
                # DATA (type 0), length 100 as a 2-byte varint, then only 10 bytes of it.
                peer._quic.send_stream_data(sid, b"\x00\x40\x64" + b"x" * 10)
                peer.transmit()
                await asyncio.sleep(0.2)
                peer._quic.reset_stream(sid, 0x100)
                peer.transmit()
                await asyncio.sleep(0.2)
                print("sent truncated", flush=True)
            elif args.mode == "echo":
                for i, size in enumerate(args.sizes):
                    await echo_once(peer, auth, size, i + 1)
            elif args.mode == "malformed":
                cases = [
                    ("GET", [(b":method", b"GET"), (b":scheme", b"https"),
                             (b":authority", auth), (b":path", b"/")]),
                    ("CONNECT with :scheme and :path",
                     [(b":method", b"CONNECT"), (b":scheme", b"https"),
                      (b":authority", auth), (b":path", b"/")]),
                    ("CONNECT without :authority", [(b":method", b"CONNECT")]),
                ]
                for name, headers in cases:
                    kind, code, _, _ = await request(peer, headers)
                    if (kind, code) != ("status", "400") and kind != "reset":
                        raise RuntimeError(f"{name}: got {kind} {code}")
                    print(f"refused ok: {name}: {kind} {code}", flush=True)
                await echo_once(peer, auth, 1000, 9)
    except ConnectionError as e:
        if args.mode == "untrusted":
            print(f"refused ok: {e!r}", flush=True)
            return
        raise


async def on_request(peer, event, q, args):
    headers = dict(event.headers)
    sid = event.stream_id

    def answer(status, end):
        peer.h3.send_headers(sid, [(b":status", str(status).encode())], end_stream=end)
        peer.transmit()

    try:
        who = check_peer(peer._quic, args.ca, None)
    except Exception as e:  # noqa: BLE001 - any failure is a refusal
        print(f"tunnel refused: client identity: {e}", flush=True)
        return answer(401, True)
    if headers.get(b":protocol") == b"connect-udp":
        return await serve_udp(peer, sid, headers, q, answer)
    if headers.get(b":method") != b"CONNECT" or b":path" in headers or b":scheme" in headers:
        print("tunnel refused: malformed", flush=True)
        return answer(400, True)
    authority = headers.get(b":authority", b"").decode()
    port = authority.rsplit(":", 1)[-1]
    if port in ("401", "503"):
        print(f"tunnel refused: {port}", flush=True)
        return answer(int(port), True)
    answer(200, False)
    total = 0
    while True:
        kind, *rest = await q.get()
        if kind == "reset":
            print(f"tunnel reset: {rest[0]:#x} after {total} bytes", flush=True)
            return
        if kind == "data":
            total += len(rest[0])
            peer.send(sid, rest[0], end=rest[1])
            if rest[1]:
                break
    print(f"tunnel done: authority={authority} peer={who} bytes={total}", flush=True)


async def serve_udp(peer, sid, headers, q, answer):
    """Echoes each HTTP/3 datagram of a CONNECT-UDP flow until the client ends it."""
    path = headers.get(b":path", b"").decode()
    if not path.startswith(UDP_PATH.split("{")[0]) or headers.get(b":scheme") != b"https":
        print("flow refused: malformed", flush=True)
        return answer(400, True)
    peer.h3.send_headers(sid, [(b":status", b"200"), (b"capsule-protocol", b"?1")])
    peer.transmit()
    count = 0
    while True:
        kind, *rest = await q.get()
        if kind == "dgram":
            count += 1
            peer.h3.send_datagram(sid, rest[0])
            peer.transmit()
        elif kind == "reset" or (kind == "data" and rest[1]):
            break
    print(f"flow done: path={path} datagrams={count}", flush=True)


async def run_server(args):
    c = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    c.max_datagram_frame_size = 65536
    c.load_cert_chain(args.cert, args.key)
    c.max_data = 16 * 1024 * 1024
    c.max_stream_data = 4 * 1024 * 1024
    host, port = args.listen.rsplit(":", 1)

    # aioquic asks for a client certificate only when told to (a test knob of its TLS
    # context); HBONE is mutual TLS, so every server context asks. The chain and SPIFFE id
    # are checked per request in `check_peer`.
    original = aioquic_tls.Context.__init__

    def mutual(self, *a, **kw):
        original(self, *a, **kw)
        if not kw.get("is_client", a[0] if a else True):
            self._request_client_certificate = True

    aioquic_tls.Context.__init__ = mutual

    def protocol(*a, **kw):
        return Peer(*a, on_request=lambda p, e, q: on_request(p, e, q, args), **kw)

    server = await serve(host, int(port), configuration=c, create_protocol=protocol)
    print(f"listening {args.listen}", flush=True)
    try:
        await asyncio.Future()
    finally:
        server.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["echo", "malformed", "untrusted", "truncated", "udp", "server"])
    p.add_argument("sizes", nargs="*", type=int)
    p.add_argument("--server")
    p.add_argument("--listen")
    p.add_argument("--authority", default="127.0.0.1:8080")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--expect-id")
    args = p.parse_args()
    try:
        asyncio.run(run_server(args) if args.mode == "server" else run_client(args))
    except Exception as e:  # noqa: BLE001 - report any failure as the exit status
        print(f"FAILED: {e!r}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
