"""OTLP export end to end, received by a collector written here from the OpenTelemetry
project's own Python messages and gRPC stubs (PyPI `opentelemetry-proto`, over grpcio).

Two `ambit-ztunnel` processes and an `ambit-waypoint`, all exporting to the collector: a
request from the client on node A goes through the waypoint to web-v1 on node B. The three
hops' spans share one trace id and chain (node A's tunnel → the waypoint's request → node B's
tunnel); the access logs arrive as log records in that trace; resource attributes name each
proxy. With the collector unreachable, requests are served as before and the dropped records
are counted.
"""

from __future__ import annotations

import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.common import socks5_connect, wait_until  # noqa: E402

BIN = pathlib.Path(os.environ.get("AMBIT_BIN", REPO / "target" / "debug"))


class Collector(trace_service_pb2_grpc.TraceServiceServicer, logs_service_pb2_grpc.LogsServiceServicer):
    """Keeps every span and log record it is sent, with its resource's attributes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spans: list[tuple[dict, object]] = []
        self.logs: list[tuple[dict, object]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @staticmethod
    def _attrs(kvs) -> dict:
        return {kv.key: kv.value.string_value for kv in kvs}

    def Export(self, request, context):  # noqa: N802 (gRPC method name)
        with self.lock:
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                for rs in request.resource_spans:
                    res = self._attrs(rs.resource.attributes)
                    for ss in rs.scope_spans:
                        self.spans.extend((res, s) for s in ss.spans)
                return trace_service_pb2.ExportTraceServiceResponse()
            for rl in request.resource_logs:
                res = self._attrs(rl.resource.attributes)
                for sl in rl.scope_logs:
                    self.logs.extend((res, r) for r in sl.log_records)
            return logs_service_pb2.ExportLogsServiceResponse()

    def stop(self):
        self.server.stop(grace=None)


class App:
    """An HTTP/1.1 app on `ip:8080` answering `<name> got <request line>`."""

    def __init__(self, ip: str, name: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, 8080))
        self.sock.listen(64)
        self.name = name
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(c,), daemon=True).start()

    def _answer(self, c: socket.socket):
        with c:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = c.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n")[0].decode()
            body = f"{self.name} got {line}\n".encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


class Mesh:
    """node A (client 127.N.1.2), node B (web-v1 127.N.2.2), the waypoint at 127.N.3.2 for
    service web (VIP 127.N.100.1); every daemon exports to `endpoint`."""

    def __init__(self, net: int, endpoint: str, extra_env: dict[str, str] | None = None):
        self.net = net
        self.tmp = tempfile.TemporaryDirectory()
        d = pathlib.Path(self.tmp.name)
        self.procs: list[subprocess.Popen] = []
        subprocess.run([str(BIN / "ambitctl"), "ca", "init", "--dir", str(d / "ca")], check=True,
                       capture_output=True)
        (d / "local.yaml").write_text(f"""workloads:
- {{uid: t/client, name: client, namespace: demo, serviceAccount: client, workloadIps: [127.{net}.1.2], node: node-a}}
- {{uid: t/v1, name: web-v1, namespace: demo, serviceAccount: web, workloadIps: [127.{net}.2.2], node: node-b, canonicalName: web, canonicalRevision: v1, services: {{"demo/web.demo.svc.cluster.local": {{80: 8080}}}}}}
- {{uid: t/wp, name: waypoint, namespace: demo, serviceAccount: waypoint, workloadIps: [127.{net}.3.2], node: none}}
services:
- {{name: web, namespace: demo, hostname: web.demo.svc.cluster.local, vips: ["/127.{net}.100.1"], ports: {{80: 8080}}, waypoint: {{destination: "/127.{net}.3.2"}}}}
""")
        (d / "l7.yaml").write_text("""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
""")
        self.app = App(f"127.{net}.2.2", "web-v1")
        env = dict(os.environ, RUST_LOG="warn", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                   OTEL_BSP_SCHEDULE_DELAY="100", **(extra_env or {}))
        env.pop("NO_COLOR", None)
        for node, host in (("node-b", 2), ("node-a", 1)):
            at = lambda port: f"127.{net}.0.{host}:{port}"  # noqa: E731
            self.procs.append(subprocess.Popen(
                [str(BIN / "ambit-ztunnel"), "--config", str(d / "local.yaml"), "--node", node,
                 "--ca-dir", str(d / "ca"), "--socks5", at(15080), "--metrics", at(15020),
                 "--readiness", at(15021), "--admin", "off"],
                env=dict(env, NODE_NAME=node, OTEL_SERVICE_NAME=f"ztunnel-{node}"),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.procs.append(subprocess.Popen(
            [str(BIN / "ambit-waypoint"), "--config", str(d / "local.yaml"), "--l7", str(d / "l7.yaml"),
             "--name", "waypoint", "--namespace", "demo", "--ca-dir", str(d / "ca"),
             "--hbone", f"127.{net}.3.2:15008", "--metrics", f"127.{net}.3.2:15020",
             "--readiness", f"127.{net}.3.2:15021"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for ready in (f"127.{net}.0.1:15021", f"127.{net}.0.2:15021", f"127.{net}.3.2:15021"):
            wait_until(lambda: self._status(f"http://{ready}/healthz/ready") == 200, 60, f"{ready} ready")

    @staticmethod
    def _status(url: str) -> int:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status

    def metrics(self, host: str) -> str:
        with urllib.request.urlopen(f"http://{host}:15020/metrics", timeout=5) as r:
            return r.read().decode()

    def get(self, path: str) -> str:
        s = socks5_connect(f"127.{self.net}.0.1:15080", f"127.{self.net}.1.2", f"127.{self.net}.100.1", 80)
        with s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: web.demo.svc.cluster.local\r\nConnection: close\r\n\r\n".encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        self.app.sock.close()
        self.tmp.cleanup()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.stop()


def test_three_hops_share_a_trace_and_chain(collector):
    mesh = Mesh(95, f"http://127.0.0.1:{collector.port}")
    try:
        reply = mesh.get("/items")
        assert reply.startswith("HTTP/1.1 200") and "web-v1 got GET /items" in reply, reply

        def three_spans():
            with collector.lock:
                by_service = {}
                for res, s in collector.spans:
                    by_service.setdefault(res.get("service.name"), []).append((res, s))
            want = ("ztunnel-node-a", "ambit-waypoint", "ztunnel-node-b")
            return all(by_service.get(w) for w in want) and by_service
        spans = wait_until(three_spans, 30, "spans from all three proxies")
        (a_res, a), = spans["ztunnel-node-a"]
        (w_res, w), = spans["ambit-waypoint"]
        b = [s for _, s in spans["ztunnel-node-b"]]
        assert len(b) == 1, b
        b = b[0]
        # One trace across the three hops; each hop a child of the one before.
        assert len(a.trace_id) == 16 and a.trace_id.hex() != "0" * 32
        assert a.trace_id == w.trace_id == b.trace_id
        assert a.parent_span_id == b"", "node A starts the trace"
        assert w.parent_span_id == a.span_id
        assert b.parent_span_id == w.span_id
        assert len({a.span_id, w.span_id, b.span_id}) == 3
        assert (a.name, b.name) == ("outbound", "inbound")
        assert w.name == "GET demo/web"
        # Kinds: node A calls out (CLIENT = 3), the waypoint and node B serve (SERVER = 2).
        assert (a.kind, w.kind, b.kind) == (3, 2, 2)
        attrs = {kv.key: kv.value.string_value for kv in w.attributes}
        assert attrs["method"] == "GET" and attrs["response_code"] == "200", attrs
        assert a.end_time_unix_nano >= a.start_time_unix_nano > 0
        assert a_res["k8s.node.name"] == "node-a"
        assert w_res["service.name"] == "ambit-waypoint"

        # The access logs arrive as log records, in the same trace.
        def logs():
            with collector.lock:
                recs = [(res, r) for res, r in collector.logs]
            bodies = {(res.get("service.name"), r.body.string_value) for res, r in recs}
            return {("ztunnel-node-a", "connection complete"), ("ambit-waypoint", "request complete"),
                    ("ztunnel-node-b", "connection complete")} <= bodies and recs
        recs = wait_until(logs, 30, "access log records from all three proxies")
        waypoint_log = next(r for res, r in recs if res.get("service.name") == "ambit-waypoint")
        assert waypoint_log.trace_id == a.trace_id and waypoint_log.span_id == w.span_id
        assert waypoint_log.severity_text == "INFO"
        fields = {kv.key: kv.value.string_value for kv in waypoint_log.attributes}
        assert fields["path"] == "/items" and fields["route"] == "demo/web", fields
    finally:
        mesh.close()


def test_sampling_by_rate_keeps_whole_traces():
    """At a ratio of 0, no proxy exports a span; access logs still go out."""
    c = Collector()
    mesh = Mesh(96, f"http://127.0.0.1:{c.port}", {"OTEL_TRACES_SAMPLER": "traceidratio",
                                                   "OTEL_TRACES_SAMPLER_ARG": "0"})
    try:
        for _ in range(5):
            assert mesh.get("/").startswith("HTTP/1.1 200")
        wait_until(lambda: len(c.logs) >= 15, 30, "15 access log records (5 requests x 3 proxies)")
        assert c.spans == []
    finally:
        mesh.close()
        c.stop()


def _latencies(mesh: Mesh, n: int = 40) -> list[float]:
    times = []
    for _ in range(n):
        t = time.monotonic()
        assert "web-v1 got" in mesh.get("/")
        times.append(time.monotonic() - t)
    return times


def test_an_unreachable_collector_never_slows_or_blocks_requests():
    """A collector that accepts connections and never answers: exports hang until their
    timeout (60 s), the queues fill, records are dropped and counted, and requests take what
    they take with export off (the same mesh shape, the same run). A data path that waited on
    export would take the export timeout per request, or hang once a queue filled."""
    off = Mesh(98, "")
    try:
        baseline = _latencies(off)
        assert "ambit_otlp_dropped_total" not in off.metrics("127.98.0.1")
    finally:
        off.close()
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1024)
    port = hole.getsockname()[1]
    mesh = Mesh(97, f"http://127.0.0.1:{port}", {"OTEL_BSP_MAX_QUEUE_SIZE": "4",
                                                 "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2",
                                                 "OTEL_EXPORTER_OTLP_TIMEOUT": "60000"})
    try:
        down = _latencies(mesh)
        dropped = 0
        for host in ("127.97.0.1", "127.97.3.2"):
            text = mesh.metrics(host)
            dropped += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                           if line.startswith("ambit_otlp_dropped_total{") and 'reason="queue_full"' in line)
        assert dropped > 0, "the queues never filled: records were not dropped"
        med_off, med_down = statistics.median(baseline), statistics.median(down)
        print(f"median request latency: export off {med_off * 1e3:.2f} ms, "
              f"collector unreachable {med_down * 1e3:.2f} ms, dropped {dropped:.0f}")
        assert med_down < med_off + 1.0, (med_off, med_down)
        assert max(down) < 30.0, down
    finally:
        mesh.close()
        hole.close()
