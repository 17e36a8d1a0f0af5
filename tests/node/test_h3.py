"""Two ambit-ztunnel daemons in two network namespaces on a veth pair: TCP over HBONE/HTTP3,
a DNS query (dnspython) over a CONNECT-UDP flow from a forward listener and another through
SOCKS5 UDP ASSOCIATE (PySocks), an `iperf3 -u` run over a flow, and the fall back to HTTP/2
when UDP 15008 is dropped by iptables on the server's host."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from test_inpod import binary, run
from tests.common import wait_until

TAG = f"{os.getpid() % 10000}"
NS_A, NS_B = f"amb-h3a-{TAG}", f"amb-h3b-{TAG}"
IP_A, IP_B = "10.79.0.1", "10.79.0.2"
PY = sys.executable

LOCAL = f"""workloads:
- {{uid: t/client, name: client, namespace: demo, serviceAccount: client, node: node-a,
   workloadIps: [{IP_A}]}}
- {{uid: t/server, name: server, namespace: demo, serviceAccount: server, node: node-b,
   workloadIps: [{IP_B}], hboneHttp3: true}}
"""

# A TCP echo on :7 and a DNS server on :53 answering every A query with 10.1.2.3.
APPS = textwrap.dedent(f"""
    import socket, threading
    import dns.message, dns.rrset
    def echo(c):
        while (d := c.recv(65536)):
            c.sendall(d)
        c.close()
    def tcp():
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("{IP_B}", 7)); s.listen(16)
        while True:
            threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
    threading.Thread(target=tcp, daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("{IP_B}", 53))
    print("ready", flush=True)
    while True:
        data, peer = u.recvfrom(4096)
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A", "10.1.2.3"))
        u.sendto(r.to_wire(), peer)
""")

TCP_CLIENT = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(pathlib.Path(__file__).resolve().parents[2])!r})
    from tests.common import socks5_connect
    data = bytes(range(256)) * 400
    s = socks5_connect("{IP_A}:15080", "{IP_A}", "{IP_B}", 7)
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        got += s.recv(65536)
    assert got == data, "echo differs"
    print("tcp ok", len(got))
""")

DNS_CLIENT = textwrap.dedent("""
    import dns.message, dns.query
    q = dns.message.make_query("shop.example.", "A")
    r = dns.query.udp(q, "127.0.0.1", port=5353, timeout=10)
    print("dns ok", r.answer[0][0].address)
""")

# The same query through the node's SOCKS5 port, by an independent SOCKS5 UDP client.
SOCKS_DNS_CLIENT = textwrap.dedent(f"""
    import socket, socks
    import dns.message
    s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    s.set_proxy(socks.SOCKS5, "{IP_A}", 15080)
    s.settimeout(10)
    s.bind(("", 0))
    q = dns.message.make_query("socks.example.", "A")
    s.sendto(q.to_wire(), ("{IP_B}", 53))
    data, peer = s.recvfrom(4096)
    r = dns.message.from_wire(data)
    assert r.id == q.id and peer == ("{IP_B}", 53), (r.id, q.id, peer)
    print("socks dns ok", r.answer[0][0].address)
""")


def ns(name: str, *cmd: str, timeout: float = 60) -> str:
    r = subprocess.run(["ip", "netns", "exec", name, *cmd], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} in {name}: {r.stdout}{r.stderr}"
    return r.stdout


def metrics(name: str) -> str:
    return ns(name, PY, "-c", "import urllib.request;print(urllib.request.urlopen("
              "'http://127.0.0.1:15020/metrics', timeout=5).read().decode())")


def count(name: str, series: str) -> int:
    for line in metrics(name).splitlines():
        if line.startswith(series + " "):
            return int(float(line.split()[-1]))
    return 0


@pytest.fixture()
def mesh():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ambit-h3-"))
    (tmp / "local.yaml").write_text(LOCAL)
    procs: list[subprocess.Popen] = []
    run("ip", "netns", "add", NS_A)
    run("ip", "netns", "add", NS_B)
    try:
        run("ip", "link", "add", f"h3a{TAG}", "netns", NS_A, "type", "veth", "peer",
            "name", f"h3b{TAG}", "netns", NS_B)
        for n, dev, ip in [(NS_A, f"h3a{TAG}", IP_A), (NS_B, f"h3b{TAG}", IP_B)]:
            run("ip", "-n", n, "link", "set", "lo", "up")
            run("ip", "-n", n, "addr", "add", f"{ip}/24", "dev", dev)
            run("ip", "-n", n, "link", "set", dev, "up")
        apps = subprocess.Popen(["ip", "netns", "exec", NS_B, PY, "-c", APPS],
                                stdout=subprocess.PIPE, text=True)
        procs.append(apps)
        assert apps.stdout is not None and apps.stdout.readline().startswith("ready")

        def node(name: str, node_name: str, *extra: str) -> subprocess.Popen:
            log = open(tmp / f"{node_name}.log", "wb")
            p = subprocess.Popen(
                ["ip", "netns", "exec", name, binary("ambit-ztunnel"), "--config",
                 str(tmp / "local.yaml"), "--ca-dir", str(tmp / "ca"), "--node", node_name,
                 "--metrics", "127.0.0.1:15020", "--readiness", "127.0.0.1:15021",
                 "--admin", "off", *extra], stdout=subprocess.DEVNULL, stderr=log)
            procs.append(p)
            wait_until(lambda: "node proxy ready" in (tmp / f"{node_name}.log").read_text(
                errors="replace"), what=f"{node_name} ready")
            return p

        subprocess.run([binary("ambitctl"), "ca", "init", "--dir", str(tmp / "ca")],
                       check=True, capture_output=True)
        node(NS_B, "node-b", "--socks5", "off")

        def start_a() -> subprocess.Popen:
            return node(NS_A, "node-a", "--socks5", f"{IP_A}:15080",
                        "--udp-forward", f"127.0.0.1:5353,{IP_A},{IP_B}:53",
                        "--udp-forward", f"127.0.0.1:15201,{IP_A},{IP_B}:5201")

        yield start_a, tmp
    finally:
        for p in procs:
            p.kill()
            p.wait()
        subprocess.run(["ip", "netns", "delete", NS_A], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "delete", NS_B], stderr=subprocess.DEVNULL)


def test_tcp_and_dns_over_http3_then_http2_when_udp_is_dropped(mesh):
    start_a, tmp = mesh
    a = start_a()
    assert "tcp ok 102400" in ns(NS_A, PY, "-c", TCP_CLIENT)
    assert "dns ok 10.1.2.3" in ns(NS_A, PY, "-c", DNS_CLIENT)
    assert "socks dns ok 10.1.2.3" in ns(NS_A, PY, "-c", SOCKS_DNS_CLIENT)
    inbound_h3 = 'ambit_hbone_tunnels_total{direction="inbound",transport="h3"}'
    assert count(NS_B, inbound_h3) == 3, metrics(NS_B)
    assert count(NS_A, 'ambit_hbone_tunnels_total{direction="outbound",transport="h3"}') == 3

    # UDP 15008 dropped on B's host: a fresh node A tries QUIC, gives up, uses HTTP/2.
    ns(NS_B, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "15008", "-j", "DROP")
    a.kill()
    a.wait()
    start_a()
    assert "tcp ok 102400" in ns(NS_A, PY, "-c", TCP_CLIENT)
    assert "dns ok 10.1.2.3" in ns(NS_A, PY, "-c", DNS_CLIENT)
    inbound_h2 = 'ambit_hbone_tunnels_total{direction="inbound",transport="h2"}'
    assert count(NS_B, inbound_h2) == 2, metrics(NS_B)
    assert count(NS_B, inbound_h3) == 3, "no more QUIC got through"
    log = (tmp / "node-a.log").read_text(errors="replace")
    assert "\x1b" not in log


def test_iperf3_udp_over_a_connect_udp_flow(mesh):
    """`iperf3 -u` at a fixed rate: its TCP control connection goes straight over the veth, its
    datagrams are redirected (iptables, UDP only) to node A's forward listener and carried over
    HTTP/3 to node B, which hands them to the iperf3 server."""
    start_a, _ = mesh
    iperf3 = shutil.which("iperf3")
    assert iperf3, "iperf3 is missing: scripts/test installs it (Debian package iperf3)"
    server = subprocess.Popen(["ip", "netns", "exec", NS_B, iperf3, "-s", "-B", IP_B, "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start_a()
        wait_until(lambda: f"{IP_B}:5201" in ns(NS_B, "ss", "-ltnH"), what="iperf3 server")
        ns(NS_A, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "udp", "-d", IP_B, "--dport",
           "5201", "-j", "REDIRECT", "--to-ports", "15201")
        out = subprocess.run(
            ["ip", "netns", "exec", NS_A, iperf3, "-c", IP_B, "-u", "-b", "20M", "-l", "1200",
             "-t", "2", "-J"], capture_output=True, text=True, timeout=60)
        report = json.loads(out.stdout)
        assert "error" not in report, report["error"]
        total = report["end"]["sum"]
        # 20 Mbit/s for 2 s of 1,200-byte datagrams is about 4,170; the server counts what
        # it received, so a flow that carried nothing reports (nearly) all of them lost.
        assert total["packets"] > 1000, total
        assert total["lost_percent"] < 50, total
        inbound_h3 = 'ambit_hbone_tunnels_total{direction="inbound",transport="h3"}'
        assert count(NS_B, inbound_h3) == 1, "one flow carried the run: " + metrics(NS_B)
    finally:
        server.kill()
        server.wait()
