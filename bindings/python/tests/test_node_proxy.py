"""Node proxies from Python, through the `mesh` fixture of the ambit pytest plugin — the way a
user's test would use it."""

import socket
import threading
import time

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


@pytest.fixture(scope="module")
def udp_echo_app():
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.41.2.2", 5353))

    def serve():
        while True:
            try:
                data, peer = srv.recvfrom(65536)
                srv.sendto(data, peer)
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield "127.41.2.2:5353"
    srv.close()


def flows_ended(node: ambit.NodeProxy) -> int:
    series = 'ambit_udp_flows_total{direction="inbound",result="ok"} '
    for line in node.metrics().splitlines():
        if line.startswith(series):
            return int(float(line.split()[-1]))
    return 0


@pytest.mark.parametrize("transport", ["h3", "h2"])
def test_udp_flow_object_to_a_node_proxy(mesh, udp_echo_app, transport):
    """A UDP flow from Python straight to node B's HBONE port: datagrams answered whole, each
    in its own message; closing it ends the flow on the node; a DENY refuses new flows."""
    mesh.start(CONFIG, nodes=["node-b"])
    node = mesh.nodes["node-b"]
    client = mesh.ca.issue("spiffe://cluster.local/ns/demo/sa/client")
    web = "spiffe://cluster.local/ns/demo/sa/web"
    with ambit.hbone.connect_udp(client, "127.41.2.2:15008", web, udp_echo_app,
                                 transport=transport) as flow:
        for d in [b"one", b"two" * 100, bytes(range(256)) * 4]:
            flow.send(d)
            assert flow.recv(timeout=10) == d
        with pytest.raises(ValueError, match="datagram"):
            flow.send(b"")
    deadline = time.monotonic() + 20
    while flows_ended(node) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the node's metrics for the flow's end
    assert flows_ended(node) == 1, node.metrics()
    mesh.reload(DENY)
    with pytest.raises(ambit.TunnelError) as refused:
        ambit.hbone.connect_udp(client, "127.41.2.2:15008", web, udp_echo_app, transport=transport)
    assert refused.value.status == 401
