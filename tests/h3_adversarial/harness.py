"""Harness for an adversarial HTTP/3 peer (aioquic) against ambit-ztunnel's HBONE/HTTP3 server.

Pieces:
  * Server: one ambit-ztunnel (node-b, workload 127.0.55.2, hboneHttp3) from target/debug (built
    by scripts/test), its log captured; `ready` is an event from the log line, not a sleep.
  * Apps on 127.0.55.2: TCP echo (:7), TCP firehose (:9000, writes N bytes), UDP sink/echo (:5300).
  * Peer: an aioquic client (QuicConnectionProtocol + H3Connection) that records every QUIC and
    HTTP/3 event and lets a test await a predicate over what it saw (`wait_for`).
"""

from __future__ import annotations

import asyncio
import collections
import os
import pathlib
import re
import socket
import ssl
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Callable

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3 import events as h3e
from aioquic.h3.connection import H3Connection, Setting
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

HERE = pathlib.Path(__file__).resolve().parent
# The daemons `scripts/test` builds (cargo build -p ambit-examples).
# The directory of the last started Server (its CA and the client's certificate).
_server_dir: pathlib.Path | None = None
BIN = HERE.parents[1] / "target" / "debug"
SERVER_IP = "127.0.55.2"
CLIENT_IP = "127.0.55.1"
HBONE = (SERVER_IP, 15008)
ECHO_PORT, FIREHOSE_PORT, UDP_PORT = 7, 9000, 5300

LOCAL_YAML = f"""workloads:
- {{uid: t/client, name: client, namespace: demo, serviceAccount: client, node: node-a, workloadIps: [{CLIENT_IP}]}}
- {{uid: t/server, name: server, namespace: demo, serviceAccount: server, node: node-b, workloadIps: [{SERVER_IP}], hboneHttp3: true}}
"""


# ---------------------------------------------------------------------------------------------
# server process


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    """ambit-ztunnel serving node-b. `log_lines` grows as the daemon logs."""

    def __init__(self, workdir: pathlib.Path | None = None, binary: pathlib.Path = BIN / "ambit-ztunnel",
                 ambitctl: pathlib.Path = BIN / "ambitctl", extra: tuple[str, ...] = ()):
        self._own_dir = workdir is None
        self.dir = workdir or pathlib.Path(tempfile.mkdtemp(prefix="ambit-h3adv-"))
        self.binary, self.ambitctl, self.extra = binary, ambitctl, extra
        self.prefix: list[str] = []  # e.g. ["prlimit", "--nofile=300:300", "--"]
        self.proc: subprocess.Popen | None = None
        self.log_lines: list[str] = []
        self._ready = threading.Event()
        self._log_cv = threading.Condition()
        self.metrics_addr: str | None = None

    def start(self, timeout: float = 30) -> "Server":
        global _server_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        _server_dir = self.dir
        ca = self.dir / "ca"
        if not (ca / "ca-key.pem").exists():
            subprocess.run([str(self.ambitctl), "ca", "init", "--dir", str(ca)], check=True,
                           capture_output=True)
        client = self.dir / "client"
        if not (client / "key.pem").exists():
            subprocess.run([str(self.ambitctl), "cert", "issue", "--id",
                            "spiffe://cluster.local/ns/demo/sa/client", "--ca-dir", str(ca),
                            "--out-dir", str(client), "--force"], check=True, capture_output=True)
        (self.dir / "local.yaml").write_text(LOCAL_YAML)
        self._ready.clear()
        self.logfile = open(self.dir / "server.log", "a")
        self.proc = subprocess.Popen(
            [*self.prefix, str(self.binary), "--config", str(self.dir / "local.yaml"), "--ca-dir", str(ca),
             "--node", "node-b", "--metrics", "127.0.0.1:0", "--readiness", "127.0.0.1:0",
             "--admin", "off", "--socks5", "off", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
            env={**os.environ, "RUST_LOG": os.environ.get("AMBIT_LOG", "info")})
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(timeout):
            raise RuntimeError("server not ready:\n" + "".join(self.log_lines[-20:]))
        return self

    def _pump(self) -> None:
        assert self.proc and self.proc.stderr
        for line in self.proc.stderr:
            with self._log_cv:
                self.log_lines.append(line)
                self._log_cv.notify_all()
            self.logfile.write(line)
            self.logfile.flush()
            if "node proxy ready" in line:
                m = re.search(r"metrics=([0-9.:]+)", line)
                self.metrics_addr = m.group(1) if m else None
                self._ready.set()

    def count_log(self, pattern: str, since: int = 0) -> int:
        rx = re.compile(pattern)
        return sum(1 for l in self.log_lines[since:] if rx.search(l))

    async def wait_log(self, pattern: str, count: int = 1, since: int = 0,
                       timeout: float = 30) -> bool:
        """Waits (in a thread, woken by each new log line) for `count` lines matching."""
        rx = re.compile(pattern)

        def w() -> bool:
            with self._log_cv:
                return self._log_cv.wait_for(
                    lambda: sum(1 for l in self.log_lines[since:] if rx.search(l)) >= count,
                    timeout)
        return await asyncio.get_running_loop().run_in_executor(None, w)

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    def rss(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        f = pathlib.Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def tunnels_open(self) -> int:
        """TCP tunnels opened minus closed, from the Istio metrics."""
        m = self.metrics()
        o = sum(v for k, v in m.items() if k.startswith("istio_tcp_connections_opened_total"))
        c = sum(v for k, v in m.items() if k.startswith("istio_tcp_connections_closed_total"))
        return int(o - c)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> dict[str, float]:
        import urllib.request
        out: dict[str, float] = {}
        text = urllib.request.urlopen(f"http://{self.metrics_addr}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def bad_log_lines(self, since: int = 0) -> list[str]:
        pat = re.compile(r"panic| ERROR | WARN ")
        return [l.rstrip() for l in self.log_lines[since:] if pat.search(l)]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# apps on the server workload's address


class Apps:
    """TCP echo, TCP firehose and UDP sink/echo on SERVER_IP, in threads."""

    def __init__(self, firehose_bytes: int = 256 << 20):
        self.firehose_bytes = firehose_bytes
        self.udp_received = 0
        self.udp_bytes = 0
        self.udp_sizes: collections.Counter[int] = collections.Counter()
        self.udp_echo = False
        self.firehose_conns: list[dict] = []
        self.echo_accepted = 0
        self.echo_closed = 0
        self._cv = threading.Condition()
        self._socks: list[socket.socket] = []
        self._stop = False

    def start(self) -> "Apps":
        for port, fn in [(ECHO_PORT, self._echo), (FIREHOSE_PORT, self._firehose)]:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((SERVER_IP, port))
            s.listen(64)
            self._socks.append(s)
            threading.Thread(target=self._accept, args=(s, fn), daemon=True).start()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        u.bind((SERVER_IP, UDP_PORT))
        self._socks.append(u)
        threading.Thread(target=self._udp, args=(u,), daemon=True).start()
        return self

    def _accept(self, s: socket.socket, fn) -> None:
        while not self._stop:
            try:
                c, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=fn, args=(c,), daemon=True).start()

    def _echo(self, c: socket.socket) -> None:
        with self._cv:
            self.echo_accepted += 1
        try:
            while d := c.recv(65536):
                c.sendall(d)
        except OSError:
            pass
        c.close()
        with self._cv:
            self.echo_closed += 1
            self._cv.notify_all()

    def _firehose(self, c: socket.socket) -> None:
        rec = {"sent": 0, "closed": False, "error": None, "t0": time.monotonic(), "t_end": None}
        with self._cv:
            self.firehose_conns.append(rec)
            self._cv.notify_all()
        chunk = b"x" * 65536
        try:
            while rec["sent"] < self.firehose_bytes:
                n = c.send(chunk[: min(len(chunk), self.firehose_bytes - rec["sent"])])
                with self._cv:
                    rec["sent"] += n
        except OSError as e:
            rec["error"] = f"{type(e).__name__}: {e}"
        c.close()
        with self._cv:
            rec["closed"] = True
            rec["t_end"] = time.monotonic()
            self._cv.notify_all()

    def _udp(self, u: socket.socket) -> None:
        while not self._stop:
            try:
                d, peer = u.recvfrom(70000)
            except OSError:
                return
            with self._cv:
                self.udp_received += 1
                self.udp_bytes += len(d)
                self.udp_sizes[len(d)] += 1
                self._cv.notify_all()
            if self.udp_echo:
                try:
                    u.sendto(d, peer)
                except OSError:
                    pass

    def wait(self, pred: Callable[[], bool], timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(pred, timeout)

    def stop(self) -> None:
        self._stop = True
        for s in self._socks:
            s.close()


# ---------------------------------------------------------------------------------------------
# the peer


class DatagramH3(H3Connection):
    """H3Connection that offers HTTP/3 datagrams (RFC 9297) without WebTransport."""

    def _get_local_settings(self) -> dict[int, int]:
        s = super()._get_local_settings()
        s[Setting.H3_DATAGRAM] = 1
        return s


class Peer(QuicConnectionProtocol):
    def __init__(self, quic: QuicConnection, **kw):
        super().__init__(quic, **kw)
        self.h3 = DatagramH3(quic)
        self._waiters: list = []
        self.headers: dict[int, list] = {}
        self.data: dict[int, bytearray] = collections.defaultdict(bytearray)
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.stops: dict[int, int] = {}
        self.datagrams: dict[int, list[bytes]] = collections.defaultdict(list)
        self.terminated: qe.ConnectionTerminated | None = None
        self.h3_error: Exception | None = None
        self.max_streams_bidi_seen: list[int] = []

    def quic_event_received(self, event: qe.QuicEvent) -> None:
        if isinstance(event, qe.ConnectionTerminated):
            self.terminated = event
        elif isinstance(event, qe.StreamReset):
            self.resets[event.stream_id] = event.error_code
        elif isinstance(event, qe.StopSendingReceived):
            self.stops[event.stream_id] = event.error_code
        try:
            for ev in self.h3.handle_event(event):
                if isinstance(ev, h3e.HeadersReceived):
                    self.headers[ev.stream_id] = ev.headers
                    if ev.stream_ended:
                        self.ended.add(ev.stream_id)
                elif isinstance(ev, h3e.DataReceived):
                    self.data[ev.stream_id] += ev.data
                    if ev.stream_ended:
                        self.ended.add(ev.stream_id)
                elif isinstance(ev, h3e.DatagramReceived):
                    self.datagrams[ev.stream_id].append(ev.data)
        except Exception as e:  # aioquic's own H3 checks on what the server sent
            self.h3_error = e
        self._notify()

    def datagram_received(self, data, addr) -> None:
        super().datagram_received(data, addr)
        self._notify()  # frames without an aioquic event (MAX_STREAMS, MAX_DATA...) count too

    def _notify(self) -> None:
        for pred, fut in list(self._waiters):
            if not fut.done() and pred():
                fut.set_result(True)

    async def wait_for(self, pred: Callable[[], bool], timeout: float) -> bool:
        """Waits until `pred()` holds (checked after every event), or the timeout."""
        if pred():
            return True
        fut = asyncio.get_running_loop().create_future()
        entry = (pred, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return bool(pred())
        finally:
            self._waiters.remove(entry)

    # -- requests

    def status(self, sid: int) -> str | None:
        for k, v in self.headers.get(sid, []):
            if k == b":status":
                return v.decode()
        return None

    def connect_tcp(self, authority: str) -> int:
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, [(b":method", b"CONNECT"), (b":authority", authority.encode())])
        self.transmit()
        return sid

    def connect_udp(self, ip: str, port: int) -> int:
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, [
            (b":method", b"CONNECT"), (b":protocol", b"connect-udp"), (b":scheme", b"https"),
            (b":authority", f"{SERVER_IP}:15008".encode()),
            (b":path", f"/.well-known/masque/udp/{ip}/{port}/".encode()),
            (b"capsule-protocol", b"?1")])
        self.transmit()
        return sid

    def send_data(self, sid: int, data: bytes, end: bool = False) -> None:
        self.h3.send_data(sid, data, end)
        self.transmit()

    def send_raw(self, sid: int, raw: bytes, end: bool = False) -> None:
        """Bytes on a stream as they are (no HTTP/3 framing added)."""
        self._quic.send_stream_data(sid, raw, end)
        self.transmit()

    def send_datagram_raw(self, payload: bytes) -> None:
        """A QUIC DATAGRAM frame with exactly `payload` (no quarter-stream-id added)."""
        self._quic.send_datagram_frame(payload)

    def abandon(self) -> None:
        """Vanishes without a CONNECTION_CLOSE: the socket is closed, nothing more is sent."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._quic.handle_timer = lambda now: None  # type: ignore[method-assign]
        self._quic.datagrams_to_send = lambda now: []  # type: ignore[method-assign]
        if self._transport is not None:
            self._transport.close()

    async def close_and_wait(self, code: int = 0x100, timeout: float = 5) -> None:
        self.close(error_code=code)
        try:
            await asyncio.wait_for(self.wait_closed(), timeout)
        except asyncio.TimeoutError:
            pass
        if self._transport is not None:
            self._transport.close()


def client_config(dir: pathlib.Path | None = None, **kw) -> QuicConfiguration:
    """The peer's QUIC config, with the client certificate the last started Server issued."""
    dir = dir or _server_dir
    assert dir is not None, "start a Server first: it issues the client certificate"
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE,
                            server_name="server", max_datagram_frame_size=65536, idle_timeout=120)
    for k, v in kw.items():
        setattr(cfg, k, v)
    cfg.load_cert_chain(str(dir / "client" / "cert-chain.pem"), str(dir / "client" / "key.pem"))
    return cfg


async def open_peer(peer_cls: type[Peer] = Peer, cfg: QuicConfiguration | None = None,
                    quic_cls: type[QuicConnection] = QuicConnection, timeout: float = 10) -> Peer:
    cfg = cfg or client_config()
    quic = quic_cls(configuration=cfg)
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(lambda: peer_cls(quic),
                                                   local_addr=(CLIENT_IP, 0))
    proto = proto  # type: Peer
    proto.connect(HBONE)
    await asyncio.wait_for(proto.wait_connected(), timeout)
    if not await proto.wait_for(lambda: proto.h3.received_settings is not None or proto.terminated, timeout):
        raise RuntimeError("no SETTINGS from the server")
    return proto


async def normal_connect(payload: bytes = b"hello through the tunnel", timeout: float = 10) -> dict:
    """A fresh, well-behaved peer: CONNECT to the echo app, payload echoed back."""
    p = await open_peer()
    try:
        sid = p.connect_tcp(f"{SERVER_IP}:{ECHO_PORT}")
        await p.wait_for(lambda: sid in p.headers or sid in p.resets or p.terminated, timeout)
        status = p.status(sid)
        if status != "200":
            return {"ok": False, "status": status, "reset": p.resets.get(sid)}
        p.send_data(sid, payload, end=True)
        ok = await p.wait_for(lambda: sid in p.ended or sid in p.resets or p.terminated, timeout)
        return {"ok": ok and bytes(p.data[sid]) == payload and sid in p.ended, "status": status}
    finally:
        await p.close_and_wait()


async def normal_connect_udp(payload: bytes = b"udp hello", apps: Apps | None = None,
                             timeout: float = 10) -> dict:
    """A fresh peer: a CONNECT-UDP flow to the UDP app, echoed back (apps.udp_echo on)."""
    p = await open_peer()
    try:
        sid = p.connect_udp(SERVER_IP, UDP_PORT)
        await p.wait_for(lambda: sid in p.headers or sid in p.resets or p.terminated, timeout)
        if p.status(sid) != "200":
            return {"ok": False, "status": p.status(sid)}
        p.h3.send_datagram(sid, b"\x00" + payload)
        p.transmit()
        ok = await p.wait_for(lambda: any(d == b"\x00" + payload for d in p.datagrams[sid]), timeout)
        return {"ok": ok, "status": "200"}
    finally:
        await p.close_and_wait()
