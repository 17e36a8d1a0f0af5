"""Node proxies from Python, through the `mesh` fixture of the ambit pytest plugin — the way a
user's test would use it."""

import socket
import threading

import pytest

import ambit

CONFIG = """
workloads:
- {uid: p/client, name: client, namespace: demo, serviceAccount: client, workloadIps: [127.41.1.2], node: node-a}
- {uid: p/web, name: web, namespace: demo, serviceAccount: web, workloadIps: [127.41.2.2], node: node-b}
"""

DENY = CONFIG + """
istioPolicies:
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny-client, namespace: demo}
  spec:
    action: DENY
    rules:
    - from: [{source: {principals: ["cluster.local/ns/demo/sa/client"]}}]
"""


def echo_once(c):
    try:
        data = c.recv(65536)
        if data:
            c.sendall(data)
    except OSError:
        pass
    finally:
        c.close()


@pytest.fixture(scope="module")
def echo_app():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.41.2.2", 8080))
    srv.listen()

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=echo_once, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield "127.41.2.2:8080"
    srv.close()


def test_allow_then_deny_after_reload(mesh, echo_app):
    mesh.start(CONFIG, nodes=["node-a", "node-b"])
    with mesh.connect("node-a", from_ip="127.41.1.2", to=echo_app) as s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    mesh.reload(DENY)
    with pytest.raises(ConnectionRefusedError):
        mesh.connect("node-a", from_ip="127.41.1.2", to=echo_app)
    metrics = mesh.nodes["node-b"].metrics()
    assert 'response_flags="DENY"' in metrics
    with pytest.raises(ambit.ConfigError, match="workloadIps"):
        mesh.nodes["node-b"].reload("workloads: [{uid: x, name: x, namespace: d, workloadIps: [nope]}]")
