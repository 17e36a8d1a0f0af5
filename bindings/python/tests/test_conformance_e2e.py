"""The Gateway API conformance suite's gateway-role cases end to end, from Python: the suite's
infra namespace on loopback (echo pods for infra-backend-v1..v3 and web-backend on node B, a
client on node A), the waypoint playing the suite's `same-namespace` Gateway, each test's routes
loaded into it, and every case for that Gateway sent through SOCKS5 → HBONE → waypoint →
HBONE → the echo pod. The echo pods are Python HTTP servers answering as the suite's echo
backend does (JSON of what they saw; `?delay=`, the retry simulation, `X-Echo-Set-Header`);
the WebSocket case uses the `websockets` library at both ends, the h2c case Python `h2` at
both ends (a backend port marked `appProtocol: kubernetes.io/h2c` in the local config). Checked as the suite's
`CompareRoundTrip` checks: status, the request the backend saw, its namespace and pod, the
response headers, redirects."""

import http.client
import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import h2.config
import h2.connection
import h2.events
import pytest
import yaml
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from ambit.testing import Mesh
from test_conformance import header_errors, redirect_errors, response_errors, value

NET = 73
INFRA = "gateway-conformance-infra"
WEB = "gateway-conformance-web-backend"
GATEWAY = f"{INFRA}/same-namespace"
CLIENT_IP = f"127.{NET}.1.2"
FRONT = f"127.{NET}.100.9:80"  # a Service with no routes of its own: the Gateway's routes apply
PODS = {  # pod → (namespace, ip)
    "infra-backend-v1": (INFRA, f"127.{NET}.2.2"),
    "infra-backend-v2": (INFRA, f"127.{NET}.2.3"),
    "infra-backend-v3": (INFRA, f"127.{NET}.2.4"),
    "web-backend": (WEB, f"127.{NET}.2.5"),
}
WS_PORT = 3000  # infra-backend-v1's `third-port` (8082) targets it, as in the suite's base
H2C_PORT = 3001  # infra-backend-v1's 8081, `appProtocol: kubernetes.io/h2c` in the suite's base


def config(extra=()):
    """The local config; `extra` are the tests' own Services (namespace, name, backend pod),
    backed by that pod."""
    workloads = [f"- {{uid: t/client, name: client, namespace: {INFRA}, serviceAccount: client, "
                 f"workloadIps: [{CLIENT_IP}], node: node-a}}",
                 f"- {{uid: t/wp, name: same-namespace, namespace: {INFRA}, serviceAccount: same-namespace, "
                 f"workloadIps: [127.{NET}.3.2], node: none}}"]
    services = []
    for i, (pod, (ns, ip)) in enumerate(PODS.items()):
        ports = "{8080: 8080, 8081: 3001, 8082: 3000}" if pod == "infra-backend-v1" else "{8080: 8080}"
        # The front Service needs an endpoint for node A to send to it (via the waypoint).
        front = f', "{INFRA}/front.{INFRA}.svc.cluster.local": {{80: 8080}}' if pod == "infra-backend-v1" else ""
        front += "".join(f', "{ens}/{ename}.{ens}.svc.cluster.local": {{8080: 8080}}'
                         for ens, ename, epod in extra if epod == pod)
        workloads.append(
            f"- {{uid: t/{pod}, name: {pod}, namespace: {ns}, serviceAccount: default, workloadIps: [{ip}], "
            f'node: node-b, services: {{"{ns}/{pod}.{ns}.svc.cluster.local": {ports}{front}}}}}')
        protocols = ', appProtocols: {8081: "kubernetes.io/h2c"}' if pod == "infra-backend-v1" else ""
        services.append(
            f"- {{name: {pod}, namespace: {ns}, hostname: {pod}.{ns}.svc.cluster.local, "
            f'vips: ["/127.{NET}.100.{i + 2}"], ports: {ports}{protocols}, waypoint: {{destination: "/127.{NET}.3.2"}}}}')
    for j, (ens, ename, _) in enumerate(extra):
        services.append(
            f"- {{name: {ename}, namespace: {ens}, hostname: {ename}.{ens}.svc.cluster.local, "
            f'vips: ["/127.{NET}.101.{j + 2}"], ports: {{8080: 8080}}, waypoint: {{destination: "/127.{NET}.3.2"}}}}')
    services.append(
        f"- {{name: front, namespace: {INFRA}, hostname: front.{INFRA}.svc.cluster.local, "
        f'vips: ["/{FRONT.split(":")[0]}"], ports: {{80: 8080}}, waypoint: {{destination: "/127.{NET}.3.2"}}}}')
    return "workloads:\n" + "\n".join(workloads) + "\nservices:\n" + "\n".join(services) + "\n"


def echo_handler(pod, namespace):
    attempts = {}
    lock = threading.Lock()

    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_one(self):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            if "delay" in query:
                unit = 0.001 if query["delay"].endswith("ms") else 1.0
                time.sleep(float(query["delay"].rstrip("ms")) * unit)
            status = 200
            if "responseCode" in query:
                with lock:
                    n = attempts.get(self.path, 0)
                    attempts[self.path] = n + 1
                if n < int(query.get("succeedAfter", "0")):
                    status = int(query["responseCode"])
            body = json.dumps({
                "path": self.path, "host": self.headers.get("host", ""), "method": self.command,
                "namespace": namespace, "pod": f"{pod}-0",
                "headers": {k: self.headers.get_all(k) for k in self.headers.keys()},
            }).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            for pair in (self.headers.get("x-echo-set-header") or "").split(","):
                if ":" in pair:
                    k, v = pair.split(":", 1)
                    self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = handle_one

    return Echo


def h2c_echo(listener, pod, namespace):
    """An HTTP/2 prior-knowledge echo (Python `h2`): answers every stream with the JSON the
    HTTP echo sends, and `protocol: HTTP/2.0`."""

    def serve(conn_sock):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        conn_sock.sendall(conn.data_to_send())
        heads = {}
        with conn_sock:
            while data := conn_sock.recv(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        heads[event.stream_id] = {k.decode(): v.decode() for k, v in event.headers}
                    if isinstance(event, h2.events.StreamEnded) and event.stream_id in heads:
                        h = heads.pop(event.stream_id)
                        body = json.dumps({
                            "path": h.get(":path", ""), "host": h.get(":authority", ""),
                            "method": h.get(":method", ""), "namespace": namespace, "pod": f"{pod}-0",
                            "protocol": "HTTP/2.0",
                            "headers": {k: [v] for k, v in h.items() if not k.startswith(":")},
                        }).encode()
                        conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/json")])
                        conn.send_data(event.stream_id, body, end_stream=True)
                conn_sock.sendall(conn.data_to_send())

    def accept():
        while True:
            try:
                c, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def h2c_request(mesh, case):
    """One HTTP/2 prior-knowledge request through the mesh (Python `h2` as the client)."""
    req = case.get("request") or {}
    sock = mesh.connect("node-a", CLIENT_IP, FRONT)
    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    conn.send_headers(1, [(":method", req.get("method") or "GET"), (":path", req.get("path") or "/"),
                          (":scheme", "http"), (":authority", req.get("host") or "192.0.2.10")], end_stream=True)
    sock.sendall(conn.data_to_send())
    status, headers, body = 0, {}, b""
    with sock:
        sock.settimeout(20)
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                    status = int(headers.pop(":status"))
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done = True
            sock.sendall(conn.data_to_send())
    echoed = json.loads(body) if headers.get("content-type") == "application/json" else None
    return status, list(headers.items()), echoed


@pytest.fixture(scope="module")
def suite(repo):
    data = yaml.safe_load((repo / "testdata/gateway-api/conformance.yaml").read_text())
    apply = yaml.safe_load((repo / "testdata/gateway-api/applicability.yaml").read_text())
    return data, apply


@pytest.fixture(scope="module")
def mesh(suite):
    data, _ = suite
    extra = sorted({(sv["namespace"], sv["name"], sv["backends"][0]) for t in data["tests"]
                    for sv in t.get("services") or [] if len(sv["backends"]) == 1 and sv["backends"][0] in PODS})
    servers = []
    for pod, (ns, ip) in PODS.items():
        s = ThreadingHTTPServer((ip, 8080), echo_handler(pod, ns))
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)

    def ws_echo(ws):
        for message in ws:
            ws.send(message)

    ws = ws_serve(ws_echo, PODS["infra-backend-v1"][1], WS_PORT)
    threading.Thread(target=ws.serve_forever, daemon=True).start()
    h2c_listener = socket.create_server((PODS["infra-backend-v1"][1], H2C_PORT))
    h2c_echo(h2c_listener, "infra-backend-v1", INFRA)
    m = Mesh()
    m.start(config(extra), nodes=["node-a", "node-b"], socks_ip=f"127.{NET}.0.1")
    m.start_waypoint("", f"127.{NET}.3.2:15008", name="same-namespace", namespace=INFRA)
    yield m
    m.close()
    ws.shutdown()
    h2c_listener.close()
    for s in servers:
        s.shutdown()
        s.server_close()


def send(mesh, case):
    req = case.get("request") or {}
    sock = mesh.connect("node-a", CLIENT_IP, FRONT)
    conn = http.client.HTTPConnection("front", 80, timeout=20)
    conn.sock = sock
    headers = {"host": req.get("host") or "192.0.2.10"}
    headers.update(req.get("headers") or {})
    pairs = [f"{k}:{v}" for k, v in (case.get("backend_set_response_headers") or {}).items()]
    headers["x-echo-set-header"] = ",".join(pairs)
    conn.request(req.get("method") or "GET", req.get("path") or "/", headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    echoed = None
    if resp.getheader("content-type") == "application/json":
        echoed = json.loads(body)
    got = (resp.status, resp.getheaders(), echoed)
    conn.close()
    return got


def compare(case, status, headers, echoed):
    """`CompareRoundTrip` over what came back: `headers` are the response's (name, value) pairs,
    `echoed` the JSON the echo pod answered (None when the waypoint answered itself)."""
    resp = case.get("response") or {}
    statuses = list(resp.get("statuses") or []) + ([resp["status"]] if resp.get("status") else [])
    statuses = statuses or [200]
    if status not in statuses:
        return [f"status {status}, want {statuses}"]
    errors = []
    if status in (200, 204):
        req = case.get("request") or {}
        want = case.get("expected_request")
        src = req if want is None else want
        seen = echoed or {"method": req.get("method") or "GET", "path": "", "host": "", "namespace": "", "pod": "", "headers": {}}
        if seen["path"] != (src.get("path") or ""):
            errors.append(f"backend saw path {seen['path']!r}, want {src.get('path')!r}")
        if seen["method"] != (src.get("method") or "GET"):
            errors.append(f"backend saw method {seen['method']}")
        if src.get("host") and seen["host"] != src["host"]:
            errors.append(f"backend saw host {seen['host']!r}, want {src['host']!r}")
        if seen["namespace"] != case.get("namespace", ""):
            errors.append(f"backend namespace {seen['namespace']!r}, want {case.get('namespace')!r}")
        if not seen["pod"].startswith(case.get("backend", "")):
            errors.append(f"answered by {seen['pod']!r}, want {case.get('backend')!r}")
        seen_headers = [(k, v) for k, vs in seen["headers"].items() for v in vs]
        errors += header_errors("request", seen_headers, src.get("headers"), (want or {}).get("absent_headers"))
        errors += response_errors(resp, headers)
    elif 300 <= status < 400 and case.get("redirect"):
        errors += redirect_errors(case["redirect"], value(headers, "location") or "", (case.get("request") or {}).get("path") or "/")
    return errors


def websocket_errors(mesh, case):
    ws = case["websocket"]
    sock = mesh.connect("node-a", CLIENT_IP, FRONT)
    with ws_connect(f"ws://front{case['request']['path']}", sock=sock, open_timeout=20,
                    compression=None, origin="ws://gateway/conformance") as c:
        c.send(ws["text"])
        text = c.recv(timeout=20)
        c.send(bytes(ws["binary"]))
        binary = c.recv(timeout=20)
    errors = []
    if text != ws["text"]:
        errors.append(f"text echo {text!r}")
    if binary != bytes(ws["binary"]):
        errors.append(f"binary echo {binary!r}")
    return errors


def test_gateway_cases_hold_through_a_real_waypoint(mesh, suite):
    data, apply = suite
    waypoint = mesh.waypoints[GATEWAY]
    known = set(PODS)
    failures, ran = [], 0
    for test in data["tests"]:
        if test["role"] != "gateway" or test["name"] in apply["not_applicable"] or test["name"] in apply["not_yet"]:
            continue
        cases = [c for c in test["cases"] if c.get("gateway") == GATEWAY and not c.get("grpc")
                 and not c.get("mirrored_to") and not c.get("after_deleting")
                 and (c.get("backend") or "infra-backend-v1").split("-0")[0] in known]
        if not cases:
            continue
        waypoint.reload_l7(test["manifests"])
        for case in cases:
            ran += 1
            try:
                if case.get("websocket"):
                    errors = websocket_errors(mesh, case)
                elif (case.get("request") or {}).get("protocol") == "H2C_PRIOR_KNOWLEDGE":
                    status, headers, echoed = h2c_request(mesh, case)
                    errors = compare(case, status, headers, echoed)
                    if echoed is not None and echoed.get("protocol") != "HTTP/2.0":
                        errors.append(f"the backend was reached over {echoed.get('protocol')}")
                else:
                    errors = compare(case, *send(mesh, case))
            except OSError as e:
                errors = [f"{type(e).__name__}: {e}"]
            failures += [f"{test['name']} / {case['name']}: {e}" for e in errors]
    assert not failures, f"{len(failures)} of {ran} cases fail:\n" + "\n".join(failures)
    assert ran >= 150, f"only {ran} cases ran"
