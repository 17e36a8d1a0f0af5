"""Issue 5 end to end with independent clients: a CA, two node proxies and a waypoint started
in-process through the bindings on loopback, Python http.server apps as backends, and httpx
(HTTP/1.1, and HTTP/2 with prior knowledge) through node A's SOCKS5 port:

    httpx (from the client workload's IP) → SOCKS5 (node A) → HBONE → waypoint (JWT, L7 policy,
    HTTPRoute, retries, timeouts) → HBONE → node B → http.server apps

httpx's own SOCKS5 transport cannot choose the local address (httpx 0.28 builds its
httpcore.SOCKSProxy without `local_address` or a network backend), and the node proxy knows the
source workload by the client's IP; `SocksFrom` therefore swaps in the same httpcore.SOCKSProxy
with a network backend that binds the workload's address. Everything else is stock httpx.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from ambit.testing import Mesh

NET = 45
CLIENT_IP = f"127.{NET}.1.2"
REVIEWS = f"http://127.{NET}.100.1"
FLAKY = f"http://127.{NET}.100.4"
ISSUER = "https://issuer.example"

CONFIG = f"""
workloads:
- {{uid: t/client, name: client, namespace: demo, serviceAccount: client, workloadIps: [{CLIENT_IP}], node: node-a}}
- {{uid: t/v1, name: reviews-v1, namespace: demo, serviceAccount: reviews, workloadIps: [127.{NET}.2.2], node: node-b,
   services: {{"demo/reviews.demo.svc.cluster.local": {{80: 8080}}, "demo/reviews-v1.demo.svc.cluster.local": {{80: 8080}}}}}}
- {{uid: t/v2, name: reviews-v2, namespace: demo, serviceAccount: reviews, workloadIps: [127.{NET}.2.3], node: node-b,
   services: {{"demo/reviews.demo.svc.cluster.local": {{80: 8080}}, "demo/reviews-v2.demo.svc.cluster.local": {{80: 8080}}}}}}
- {{uid: t/flaky, name: flaky, namespace: demo, serviceAccount: flaky, workloadIps: [127.{NET}.2.4], node: node-b,
   services: {{"demo/flaky.demo.svc.cluster.local": {{80: 8080}}}}}}
- {{uid: t/wp, name: waypoint, namespace: demo, serviceAccount: waypoint, workloadIps: [127.{NET}.3.2], node: none}}
services:
- {{name: reviews, namespace: demo, hostname: reviews.demo.svc.cluster.local, vips: ["/127.{NET}.100.1"],
   ports: {{80: 8080}}, waypoint: {{destination: "/127.{NET}.3.2"}}}}
- {{name: reviews-v1, namespace: demo, hostname: reviews-v1.demo.svc.cluster.local, vips: ["/127.{NET}.100.2"],
   ports: {{80: 8080}}, waypoint: {{destination: "/127.{NET}.3.2"}}}}
- {{name: reviews-v2, namespace: demo, hostname: reviews-v2.demo.svc.cluster.local, vips: ["/127.{NET}.100.3"],
   ports: {{80: 8080}}, waypoint: {{destination: "/127.{NET}.3.2"}}}}
- {{name: flaky, namespace: demo, hostname: flaky.demo.svc.cluster.local, vips: ["/127.{NET}.100.4"],
   ports: {{80: 8080}}, waypoint: {{destination: "/127.{NET}.3.2"}}}}
"""

ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 80}]
  rules:
  - matches: [{headers: [{name: x-feature, value: beta}]}]
    backendRefs: [{name: reviews-v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-added, value: "yes"}]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-served-by, value: waypoint}]}
    backendRefs: [{name: reviews-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs:
    - {name: reviews-v1, port: 80, weight: 90}
    - {name: reviews-v2, port: 80, weight: 10}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: flaky, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: flaky}]
  rules:
  - matches: [{path: {type: Exact, value: /slow}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: flaky, port: 80}]
  - matches: [{path: {type: Exact, value: /fail-once}}]
    backendRefs: [{name: flaky, port: 80}]
  - matches: [{path: {type: Exact, value: /retry}}]
    retry: {codes: [503], attempts: 2}
    backendRefs: [{name: flaky, port: 80}]
"""


def policies(jwks):
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: demo}}
spec:
  targetRefs: [{{kind: Service, group: "", name: reviews}}]
  jwtRules:
  - issuer: {ISSUER}
    audiences: [reviews]
    jwks: '{json.dumps(jwks)}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: admin-needs-jwt, namespace: demo}}
spec:
  targetRefs: [{{kind: Service, group: "", name: reviews}}]
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["/admin/*"]}}}}]
    from: [{{source: {{notRequestPrincipals: ["{ISSUER}/*"]}}}}]
"""


class App(BaseHTTPRequestHandler):
    """Answers with JSON naming the app, the path and the headers that matter. The flaky app:
    `/slow` sleeps 3 s, `/fail-once` and `/retry` answer 503 to the first request of each
    `?id=` and 200 after that."""

    protocol_version = "HTTP/1.1"
    name = "?"
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 - http.server's naming
        status = 200
        if self.path == "/slow":
            time.sleep(3)
        if self.path.startswith(("/fail-once", "/retry")):
            with self.lock:
                n = self.seen[self.path] = self.seen.get(self.path, 0) + 1
            status = 503 if n == 1 else 200
        body = json.dumps(
            {
                "app": self.name,
                "path": self.path,
                "host": self.headers.get("host"),
                "authorization": self.headers.get("authorization"),
                "x-added": self.headers.get("x-added"),
                "traceparent": self.headers.get("traceparent"),
            }
        ).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass


def start_app(ip, name):
    handler = type(f"App_{name}", (App,), {"name": name, "seen": {}})
    server = ThreadingHTTPServer((ip, 8080), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class BindingBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting from a fixed source address."""

    def __init__(self, source):
        self.source = source

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return super().connect_tcp(host, port, timeout, self.source, socket_options)


class SocksFrom(httpx.HTTPTransport):
    """httpx's SOCKS5 transport with the connection made from `source` (see the module docs)."""

    def __init__(self, proxy, source, http2):
        super().__init__(proxy=proxy, http1=not http2, http2=http2)
        self._pool = httpcore.SOCKSProxy(
            proxy_url=proxy, http1=not http2, http2=http2, network_backend=BindingBackend(source)
        )


@pytest.fixture(scope="module")
def signing_key():
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "alg": "ES256", "use": "sig"}
    return key, {"keys": [jwk]}


@pytest.fixture(scope="module")
def mesh(signing_key):
    apps = [
        start_app(f"127.{NET}.2.2", "reviews-v1"),
        start_app(f"127.{NET}.2.3", "reviews-v2"),
        start_app(f"127.{NET}.2.4", "flaky"),
    ]
    m = Mesh()
    m.start(CONFIG, nodes=["node-a", "node-b"], socks_ip=f"127.{NET}.0.1")
    w = m.start_waypoint(ROUTES + "---" + policies(signing_key[1]), f"127.{NET}.3.2:15008", namespace="demo")
    assert w.warnings == []
    yield m
    m.close()
    for a in apps:
        a.shutdown()
        a.server_close()


PROTOCOLS = {"HTTP/1.1": False, "HTTP/2": True}


@pytest.fixture(params=list(PROTOCOLS))
def client(request, mesh):
    http2 = PROTOCOLS[request.param]
    transport = SocksFrom(mesh.socks5_url("node-a"), CLIENT_IP, http2)
    with httpx.Client(transport=transport, timeout=20) as c:
        c.protocol = request.param
        c.tag = "h2" if http2 else "h1"
        yield c


def get(client, url, **kw):
    r = client.get(url, **kw)
    assert r.http_version == client.protocol, "the protocol the client asked for is the one spoken"
    return r


def test_routing_by_header_prefix_and_weight(client):
    r = get(client, f"{REVIEWS}/anything", headers={"x-feature": "beta"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["app"], body["path"]) == ("reviews-v2", "/anything")
    assert body["traceparent"], "the waypoint adds a trace context"

    r = get(client, f"{REVIEWS}/v1/items", headers={"x-added": "no"})
    assert r.status_code == 200 and r.json()["app"] == "reviews-v1"
    assert r.json()["x-added"] == "yes", "RequestHeaderModifier set"
    assert r.headers["x-served-by"] == "waypoint"

    v2 = sum(get(client, f"{REVIEWS}/").json()["app"] == "reviews-v2" for _ in range(100))
    # 10% of 100: P(0) ≈ 3e-5, P(≥ 25) ≈ 1e-5.
    assert 1 <= v2 < 25, f"{v2} of 100 went to v2"


def test_jwt_protected_path(client, signing_key):
    key, _ = signing_key
    now = int(time.time())

    def bearer(**claims):
        body = {"iss": ISSUER, "sub": "alice", "aud": "reviews", "exp": now + 600, **claims}
        return {"authorization": "Bearer " + pyjwt.encode(body, key, algorithm="ES256", headers={"kid": "k1"})}

    r = get(client, f"{REVIEWS}/admin/users")
    assert (r.status_code, r.text) == (403, "RBAC: access denied"), "missing token"
    other = ec.generate_private_key(ec.SECP256R1())
    forged = {"authorization": "Bearer " + pyjwt.encode({"iss": ISSUER, "sub": "eve", "aud": "reviews"}, other,
                                                         algorithm="ES256", headers={"kid": "k1"})}
    r = get(client, f"{REVIEWS}/admin/users", headers=forged)
    assert r.status_code == 401, "bad signature"
    assert get(client, f"{REVIEWS}/admin/users", headers=bearer(exp=now - 3600)).status_code == 401, "expired"
    r = get(client, f"{REVIEWS}/admin/users", headers=bearer())
    assert r.status_code == 200, r.text
    assert r.json()["authorization"] is None, "the token is not forwarded by default"


def test_retry_on_a_backend_that_fails_once(client):
    r = get(client, f"{FLAKY}/fail-once?id={client.tag}")
    assert r.status_code == 503, "without a retry stanza the failure shows"
    r = get(client, f"{FLAKY}/retry?id={client.tag}")
    assert r.status_code == 200, "the retry succeeds"
    assert r.json()["path"] == f"/retry?id={client.tag}"


def test_request_timeout_is_504(client):
    started = time.monotonic()
    r = get(client, f"{FLAKY}/slow")
    assert (r.status_code, r.text) == (504, "upstream request timeout")
    assert time.monotonic() - started < 2.5, "answered at the route timeout, not when the app was done"


def test_waypoint_metrics(mesh, client):
    assert get(client, f"{REVIEWS}/").status_code == 200
    assert get(client, f"{REVIEWS}/admin/x").status_code == 403
    assert get(client, f"{REVIEWS}/admin/x", headers={"authorization": "Bearer x.y.z"}).status_code == 401
    assert get(client, f"{FLAKY}/slow").status_code == 504
    metrics = mesh.waypoints["demo/waypoint"].metrics()
    assert 'istio_requests_total{reporter="waypoint"' in metrics
    for label in [
        'source_principal="spiffe://cluster.local/ns/demo/sa/client"',
        'destination_workload="reviews-v1"',
        'response_code="401"',
        'response_code="403"',
        'response_code="504"',
    ]:
        assert label in metrics, label
