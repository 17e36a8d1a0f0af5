"""In-pod mode end to end: pods are real network namespaces on a bridge, with the redirect
rules istio-cni programs inside a pod; a fake node agent (fake_cni.py, Python) hands them to two
``ambit-ztunnel`` processes over ZDS — pods a1 and a2 to node A, b1 to node B — and the pods'
own traffic, captured in their namespaces, crosses the mesh over HBONE.

Needs root (CI runs as root); it fails, never skips, when a namespace cannot be made.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from fake_cni import FakeCni  # noqa: E402
from tests.common import wait_until  # noqa: E402

TAG = f"{os.getpid() % 10000}"
NS = "shop"
# The cluster's resolver stand-in: outside the mesh, on the pods' network.
RESOLVER = ("10.78.0.53", "fd78::53")
VIP = ("10.96.0.50", "fd96::50")
# name -> (node, IPv4, IPv6, ZDS uid, workload uid in the mesh state)
PODS = {
    "a1": ("node-a", "10.78.0.11", "fd78::11", "zds-a1", f"Kubernetes//Pod/{NS}/a1"),
    "a2": ("node-a", "10.78.0.12", "fd78::12", "zds-a2", "zds-a2"),
    "b1": ("node-b", "10.78.0.21", "fd78::21", "zds-b1", "zds-b1"),
}


def binary(name: str) -> str:
    path = str(REPO / "target" / "debug" / name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not built: run `cargo build -p ambit-examples` (scripts/test does)")
    return path


def run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed (this test needs root for network namespaces "
                    f"and iptables): {r.stderr.strip()}")
    return r.stdout


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def pod_ns(pod: str) -> str:
    return f"amb-{pod}-{TAG}"


def in_pod(pod: str, *cmd: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", pod_ns(pod), *cmd], capture_output=True,
                       text=True, timeout=30)
    return (r.stdout + r.stderr).strip()


def call(pod: str, host: str, port: int, line: str) -> str:
    return in_pod(pod, sys.executable, str(HERE / "podapp.py"), "call", host, str(port), line)


def probe(pod: str, host: str, port: int) -> str:
    return in_pod(pod, sys.executable, str(HERE / "podapp.py"), "probe", host, str(port))


def istio_cni_rules(pod: str) -> None:
    """The rules istio-cni programs inside an ambient pod (in-pod mode): inbound TCP to the
    plaintext port 15006 except HBONE (15008), outbound TCP to 15001, the proxy's own sockets
    (mark 0x539) exempt, and replies to its transparent sockets routed back to it."""
    ns = pod_ns(pod)
    for ipt, lo in (("iptables", "127.0.0.1/32"), ("ip6tables", "::1/128")):
        def t(*args: str) -> None:
            run("ip", "netns", "exec", ns, ipt, "-w", *args)
        for table in ("mangle", "nat"):
            t("-t", table, "-N", "ISTIO_PRERT")
            t("-t", table, "-N", "ISTIO_OUTPUT")
            t("-t", table, "-A", "PREROUTING", "-j", "ISTIO_PRERT")
            t("-t", table, "-A", "OUTPUT", "-j", "ISTIO_OUTPUT")
        t("-t", "mangle", "-A", "ISTIO_PRERT", "-m", "mark", "--mark", "0x539/0xfff",
          "-j", "CONNMARK", "--set-xmark", "0x111/0xfff")
        t("-t", "mangle", "-A", "ISTIO_OUTPUT", "-m", "connmark", "--mark", "0x111/0xfff",
          "-j", "CONNMARK", "--restore-mark", "--nfmask", "0xffffffff", "--ctmask", "0xffffffff")
        t("-t", "nat", "-A", "ISTIO_PRERT", "!", "-d", lo, "-p", "tcp", "!", "--dport", "15008",
          "-m", "mark", "!", "--mark", "0x539/0xfff", "-j", "REDIRECT", "--to-ports", "15006")
        # DNS capture (on by default since Istio 1.29): the pod's queries go to the proxy.
        t("-t", "nat", "-A", "ISTIO_OUTPUT", "!", "-o", "lo", "-p", "udp", "-m", "mark", "!",
          "--mark", "0x539/0xfff", "--dport", "53", "-j", "REDIRECT", "--to-port", "15053")
        t("-t", "nat", "-A", "ISTIO_OUTPUT", "!", "-d", lo, "-p", "tcp", "--dport", "53", "-m",
          "mark", "!", "--mark", "0x539/0xfff", "-j", "REDIRECT", "--to-ports", "15053")
        t("-t", "nat", "-A", "ISTIO_OUTPUT", "-p", "tcp", "-m", "mark", "--mark", "0x111/0xfff",
          "-j", "ACCEPT")
        t("-t", "nat", "-A", "ISTIO_OUTPUT", "!", "-d", lo, "-o", "lo", "-j", "ACCEPT")
        t("-t", "nat", "-A", "ISTIO_OUTPUT", "!", "-d", lo, "-p", "tcp", "-m", "mark", "!",
          "--mark", "0x539/0xfff", "-j", "REDIRECT", "--to-ports", "15001")
    for fam, default in (("-4", "0.0.0.0/0"), ("-6", "::/0")):
        run("ip", "-n", ns, fam, "rule", "add", "fwmark", "0x111/0xfff", "pref", "32764",
            "lookup", "100")
        run("ip", "-n", ns, fam, "route", "add", "local", default, "dev", "lo", "table", "100")


class Node:
    """One `ambit-ztunnel` in in-pod mode, with its fake node agent."""

    def __init__(self, name: str, tmp: pathlib.Path):
        self.name = name
        self.tmp = tmp
        base = {"node-a": 21000, "node-b": 22000}[name]
        self.metrics = f"127.0.0.1:{base + 20}"
        self.readiness = f"127.0.0.1:{base + 21}"
        self.admin = f"127.0.0.1:{base + 0}"
        self.uds = str(tmp / f"{name}.sock")
        self.cni = FakeCni(self.uds)
        self.log = tmp / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, INPOD_UDS=self.uds, RUST_LOG="info",
                   CONNECTION_TERMINATION_DEADLINE="2s")
        self.proc = subprocess.Popen(
            [binary("ambit-ztunnel"), "--config", str(self.tmp / "local.yaml"), "--node",
             self.name, "--ca-dir", str(self.tmp / "ca"), "--socks5", "off",
             "--resolv-conf", str(self.tmp / "resolv.conf"),
             "--policies", str(self.tmp / "policies.yaml"), "--metrics",
             self.metrics, "--readiness", self.readiness, "--admin", self.admin],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        assert self.cni.accept() == 1, "the proxy says ZDS version V1"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def ready(self) -> int:
        return http_get(f"http://{self.readiness}/healthz/ready")[0]

    def metrics_text(self) -> str:
        return http_get(f"http://{self.metrics}/metrics")[1]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def hand_over(self, pod: str) -> str:
        _node, _v4, _v6, uid, _w = PODS[pod]
        return self.cni.add(uid, pod, NS, f"sa-{pod}", f"/var/run/netns/{pod_ns(pod)}")


@pytest.fixture(scope="module")
def mesh():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ambit-inpod-"))
    wire = f"amb-wire-{TAG}"
    made: list[str] = []
    apps: list[subprocess.Popen] = []
    nodes: dict[str, Node] = {}
    try:
        run("ip", "netns", "add", wire)
        made.append(wire)
        run("ip", "-n", wire, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", wire, "link", "set", "br0", "up")
        for pod, (_node, v4, v6, _uid, _w) in PODS.items():
            ns = pod_ns(pod)
            run("ip", "netns", "add", ns)
            made.append(ns)
            run("ip", "-n", wire, "link", "add", f"v{pod}", "type", "veth", "peer", "name",
                "eth0", "netns", ns)
            run("ip", "-n", wire, "link", "set", f"v{pod}", "master", "br0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", "eth0")
            run("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", "eth0", "nodad")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            istio_cni_rules(pod)
        dns_ns = f"amb-dns-{TAG}"
        run("ip", "netns", "add", dns_ns)
        made.append(dns_ns)
        run("ip", "-n", wire, "link", "add", "vdns", "type", "veth", "peer", "name", "eth0",
            "netns", dns_ns)
        run("ip", "-n", wire, "link", "set", "vdns", "master", "br0", "up")
        run("ip", "-n", dns_ns, "link", "set", "lo", "up")
        run("ip", "-n", dns_ns, "addr", "add", f"{RESOLVER[0]}/24", "dev", "eth0")
        run("ip", "-n", dns_ns, "link", "set", "eth0", "up")
        resolver = subprocess.Popen(["ip", "netns", "exec", dns_ns, sys.executable,
                                     str(HERE / "dns_peer.py"), "upstream", RESOLVER[0]],
                                    stdout=subprocess.PIPE, text=True)
        apps.append(resolver)
        assert resolver.stdout is not None and resolver.stdout.readline().strip() == "listening"
        (tmp / "resolv.conf").write_text(f"search {NS}.svc.cluster.local\nnameserver {RESOLVER[0]}\n")
        run(binary("ambitctl"), "ca", "init", "--dir", str(tmp / "ca"))
        lines = ["workloads:"]
        for pod, (node, v4, v6, _uid, wuid) in PODS.items():
            services = f"{{'{NS}/reviews.{NS}.svc.cluster.local': {{9080: 8080}}}}" \
                if pod == "b1" else "{}"
            lines.append(f"- {{uid: '{wuid}', name: {pod}, namespace: {NS}, serviceAccount: "
                         f"sa-{pod}, workloadIps: [{v4}, '{v6}'], node: {node}, "
                         f"services: {services}}}")
        lines.append("- {uid: ext, name: ext, namespace: legacy, hostname: ext.corp.example, "
                     "workloadIps: [10.78.0.60], node: elsewhere}")
        lines += ["services:",
                  f"- {{name: reviews, namespace: {NS}, hostname: reviews.{NS}.svc.cluster.local,"
                  f" vips: ['/{VIP[0]}', '/{VIP[1]}'], ports: {{9080: 8080}}}}"]
        (tmp / "local.yaml").write_text("\n".join(lines) + "\n")
        (tmp / "policies.yaml").write_text(f"""\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-a2-over-v6, namespace: {NS}}}
spec:
  action: DENY
  rules:
  - from:
    - source: {{ipBlocks: ["{PODS['a2'][2]}/128"]}}
""")
        b1 = subprocess.Popen(["ip", "netns", "exec", pod_ns("b1"), sys.executable,
                               str(HERE / "podapp.py"), "serve", "b1", "8080"],
                              stdout=subprocess.PIPE, text=True)
        apps.append(b1)
        assert b1.stdout is not None and b1.stdout.readline().strip() == "listening"
        for name in ("node-a", "node-b"):
            nodes[name] = Node(name, tmp)
            nodes[name].start()
        yield nodes
    finally:
        for n in nodes.values():
            n.stop()
            n.cni.close()
        for a in apps:
            a.kill()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def handed_over(mesh) -> None:
    a, b = mesh["node-a"], mesh["node-b"]
    for node, pods in ((a, ("a1", "a2")), (b, ("b1",))):
        for p in pods:
            assert node.hand_over(p) == "", f"pod {p} refused"
        assert node.cni.snapshot_sent() == ""
        wait_until(lambda n=node: n.ready() == 200, what=f"{node.name} ready")


def test_readiness_waits_for_the_snapshot_then_pods_talk_over_hbone(mesh):
    a, b = mesh["node-a"], mesh["node-b"]
    assert a.ready() == 503, "not ready before the node agent's snapshot"
    handed_over(mesh)
    for src in ("a1", "a2"):
        v4 = PODS[src][1]
        out = call(src, PODS["b1"][1], 8080, f"hello from {src}")
        assert out == f"b1 saw {v4}: hello from {src}", "the app sees the client pod's own IP"
    log = b.log_text()
    for src in ("a1", "a2"):
        assert f"spiffe://cluster.local/ns/{NS}/sa/sa-{src}" in log, "each pod's own identity"
    inbound = [line for line in b.metrics_text().splitlines()
               if line.startswith("istio_tcp_connections_opened_total")
               and 'reporter="destination"' in line]
    for src in ("a1", "a2"):
        assert any(f"sa/sa-{src}" in line and 'destination_workload="b1"' in line
                   for line in inbound), inbound
    outbound = a.metrics_text()
    assert re.search(r'istio_tcp_connections_opened_total\{reporter="source".*'
                     r'source_workload="a1".*destination_workload="b1"', outbound), outbound
    assert "workload_manager_active_proxy_count 2" in outbound


def test_ipv6_pod_to_pod(mesh):
    out = call("a1", PODS["b1"][2], 8080, "over six")
    assert out == f"b1 saw {PODS['a1'][2]}: over six"


def test_not_a_netns_is_refused_in_the_ack(mesh):
    a = mesh["node-a"]
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        err = a.cni.add("zds-bogus", "a1", NS, "sa-a1", fd)
    finally:
        os.close(fd)
    assert "not a network namespace" in err, err
    assert a.cni.raw(b"\xff\xff\xff garbage") != "", "a malformed message gets an error ack"
    assert a.cni.delete("zds-bogus") == "", "and the session goes on"
    assert call("a1", PODS["b1"][1], 8080, "still") == f"b1 saw {PODS['a1'][1]}: still"


def test_del_closes_the_pods_listeners(mesh):
    a = mesh["node-a"]
    a2 = PODS["a2"][1]
    assert probe("a2", a2, 15008) == "open"
    assert a.cni.delete("zds-a2") == ""
    wait_until(lambda: probe("a2", a2, 15008) == "refused", what="a2's HBONE port closed")
    assert probe("a2", "127.0.0.1", 15001) == "refused"
    assert call("a1", PODS["b1"][1], 8080, "a1 unaffected").endswith("a1 unaffected")
    assert a.hand_over("a2") == ""
    assert call("a2", PODS["b1"][1], 8080, "back") == f"b1 saw {a2}: back"


def test_agent_reconnect_snapshot_drops_pods_it_no_longer_names(mesh):
    a = mesh["node-a"]
    a.cni.drop()
    assert a.cni.accept() == 1, "the proxy reconnects to the agent"
    assert a.cni.keep("zds-a1") == ""
    assert a.cni.snapshot_sent() == ""
    wait_until(lambda: probe("a2", PODS["a2"][1], 15008) == "refused",
               what="a2 removed after the snapshot")
    assert call("a1", PODS["b1"][1], 8080, "kept").endswith("kept")
    assert a.cni.snapshot_sent() != "", "a second snapshot on one connection is refused"
    assert a.hand_over("a2") == ""


def test_restart_then_snapshot_reconciles(mesh):
    a = mesh["node-a"]
    a.stop()
    assert probe("a1", PODS["a1"][1], 15008) == "refused", "the proxy's listeners went with it"
    a.start()
    assert a.ready() == 503
    assert a.hand_over("a1") == ""
    assert a.hand_over("a2") == ""
    assert a.cni.snapshot_sent() == ""
    wait_until(lambda: a.ready() == 200, what="ready after the snapshot")
    for src in ("a1", "a2"):
        out = call(src, PODS["b1"][1], 8080, "after restart")
        assert out == f"b1 saw {PODS[src][1]}: after restart"


def dns(pod: str, *args: str) -> dict:
    out = in_pod(pod, sys.executable, str(HERE / "dns_peer.py"), *args)
    try:
        return json.loads(out)
    except ValueError:
        raise AssertionError(f"dns_peer {args}: {out}") from None


def test_dns_answers_the_mesh_and_forwards_the_rest(mesh):
    a = mesh["node-a"]
    wait_until(lambda: a.ready() == 200, what="node A ready")
    fqdn = dns("a1", "query", RESOLVER[0], f"reviews.{NS}.svc.cluster.local", "A", "udp")
    assert fqdn["answers"] == [f"reviews.{NS}.svc.cluster.local. A {VIP[0]}"] and fqdn["aa"]
    short = dns("a1", "query", RESOLVER[0], "reviews", "A", "udp")
    assert short["answers"] == [f"reviews. A {VIP[0]}"], "short name in the pod's namespace"
    six = dns("a1", "query", RESOLVER[0], "reviews", "AAAA", "tcp")
    assert six["answers"] == [f"reviews. AAAA {VIP[1]}"], "AAAA over TCP"
    ext = dns("a2", "query", RESOLVER[0], "ext.corp.example", "A", "udp")
    assert ext["answers"] == ["ext.corp.example. A 10.78.0.60"], "a workload's hostname"
    fwd = dns("a1", "query", RESOLVER[0], "example.test", "A", "udp")
    assert fwd["answers"] == ["example.test. A 192.0.2.7"] and not fwd["aa"], "forwarded"
    fwd_tcp = dns("a1", "query", RESOLVER[0], "example.test", "A", "tcp")
    assert fwd_tcp["answers"] == ["example.test. A 192.0.2.7"]
    nx = dns("a1", "query", RESOLVER[0], "nowhere.test", "A", "udp")
    assert nx["rcode"] == "NXDOMAIN", "the resolver's answer, as it is"
    upd = dns("a1", "update", RESOLVER[0])
    assert (upd["rcode"], upd["opcode"]) == ("NOERROR", "UPDATE"), "UPDATE forwarded, not NOTIMP"
    junk = dns("a1", "garbage", RESOLVER[0])
    assert junk["garbage"] == "FORMERR" and junk["id"] == 0x1234
    assert junk["after"]["answers"] == ["example.test. A 192.0.2.7"], "and it goes on serving"
    metrics = a.metrics_text()
    requests = [m for m in metrics.splitlines() if m.startswith("istio_dns_requests_total")]
    assert any('request_protocol="tcp"' in m for m in requests), requests
    upstream = [m for m in metrics.splitlines()
                if m.startswith("istio_dns_upstream_requests_total")]
    assert sum(int(m.split()[-1]) for m in upstream) >= 4, upstream
    assert "dns request" in a.log_text()


def test_policy_on_an_ipv6_source_range(mesh):
    # shop-wide DENY from a2's IPv6 address only (policies.yaml): enforced at b1's node.
    denied = call("a2", PODS["b1"][2], 8080, "v6 from a2")
    assert denied.startswith("error"), denied
    assert call("a2", PODS["b1"][1], 8080, "v4 from a2") == f"b1 saw {PODS['a2'][1]}: v4 from a2"
    assert call("a1", PODS["b1"][2], 8080, "v6 from a1") == f"b1 saw {PODS['a1'][2]}: v6 from a1"
    b = mesh["node-b"]
    assert "no-a2-over-v6" in b.log_text(), "the deciding policy is logged"


def test_sigterm_drains_open_connections_with_readiness_503(mesh):
    b = mesh["node-b"]
    session = subprocess.Popen(
        ["ip", "netns", "exec", pod_ns("a1"), sys.executable, str(HERE / "podapp.py"),
         "session", PODS["b1"][1], "8080"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert session.stdin is not None and session.stdout is not None
    try:
        def say(line: str) -> str:
            session.stdin.write(line + "\n")
            session.stdin.flush()
            return session.stdout.readline().strip()
        assert say("before") == f"b1 saw {PODS['a1'][1]}: before"
        assert b.proc is not None
        b.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: b.ready() == 503, what="readiness 503 while draining")
        assert "draining" in http_get(f"http://{b.readiness}/healthz/ready")[1]
        assert say("during") == f"b1 saw {PODS['a1'][1]}: during", "open connections go on"
        wait_until(lambda: probe("b1", PODS["b1"][1], 15008) == "refused", what="no new connections")
        b.proc.wait(timeout=30)
        assert say("after") == "", "closed at the deadline"
    finally:
        session.kill()
        b.proc = None
    b.start()
    assert b.hand_over("b1") == ""
    assert b.cni.snapshot_sent() == ""
    wait_until(lambda: b.ready() == 200, what="node B back")
