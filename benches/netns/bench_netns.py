"""The node proxy measured as users run it: two hosts (network namespaces joined by a veth
pair), the client host's application traffic captured by iptables
(`-t nat -A OUTPUT -p tcp ! -o lo ... -j REDIRECT --to-ports 15001`) into an `ambit-ztunnel`,
carried over HBONE to the server host's `ambit-ztunnel`, both logging access at info. Beside it,
in the same run, the same measurements straight over the veth (ports the capture rule leaves
alone): the direct baseline.

    cargo build --release -p ambit-examples --bin ambit-ztunnel --bin ambitctl
    sudo python3 benches/netns/bench_netns.py [--quick] [--runs 3] [--json out.json] \
        [--ztunnel PATH]

With `--ztunnel PATH` (Istio's ztunnel, built from its source with `--features testing` for its
test CA), a ztunnel pair runs in the same places, alternating with the ambit pair run by run,
and the table gains its column and the ratios ambit / ztunnel.

Needs root, iproute2, iptables, iperf3, sockperf and a C compiler (Debian packages; installed
if missing).
Every namespace and process it makes is removed when it ends, however it ends. Figures:

- iperf3 one stream, `-R` (server to client) and `-P 4`, Gbit/s (receiver side);
- sockperf TCP ping-pong of 64 B, half round trip, p50 and p99 in µs;
- sequential new connections per second (connect, 1 byte, its echo, close; a C client and
  server, `connrate.c`, so neither end is the limit);
- RSS of each proxy idle, and per idle captured tunnel with N held (default 10,000);
- CPU-seconds per GB carried, per proxy, over the one-stream iperf3 run.

Medians over the runs are printed as a table and written as JSON.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
TAG = os.getpid() % 100000
C, S = f"ambn-c-{TAG}", f"ambn-s-{TAG}"
C_IP, S_IP = "10.91.0.1", "10.91.0.2"
# Meshed ports (captured) and their direct twins (left alone by the capture rule).
IPERF, IPERF_D = 5201, 5202
SOCKPERF, SOCKPERF_D = 11111, 11112
ECHO, ECHO_D = 7001, 7002
# The connection-rate peers (connrate.c): a sequential echo server for a C client.
CONN, CONN_D = 7003, 7004

CONNRATE = ""  # the built connrate.c, set up with the hosts
procs: list[subprocess.Popen] = []
Pair = tuple[subprocess.Popen, subprocess.Popen]
made: list[str] = []


def sh(*cmd: str, check: bool = True, capture: bool = True) -> str:
    r = subprocess.run(cmd, capture_output=capture, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip() if capture else ''}")
    return r.stdout if capture else ""


def nsexec(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def spawn(ns: str, *cmd: str, **kw) -> subprocess.Popen:
    p = subprocess.Popen(nsexec(ns, *cmd), **kw)
    procs.append(p)
    return p


def cleanup() -> None:
    # SIGTERM first: a proxy under a profiler (callgrind, heaptrack) writes its profile as it
    # exits.
    stop([p for p in procs if p.poll() is None])
    for ns in made:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def ensure_tools(pkgs: dict[str, str] | None = None) -> None:
    """Installs the Debian package of each tool (command → package) not found."""
    pkgs = pkgs or {"iperf3": "iperf3", "sockperf": "sockperf", "iptables": "iptables",
                    "ip": "iproute2", "cc": "gcc"}
    missing = [p for t, p in pkgs.items()
               if not shutil.which(t) and not pathlib.Path("/usr/sbin", t).exists()]
    if missing:
        sh("apt-get", "install", "-y", "-qq", *missing, capture=False)


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_ready(ns: str, addr: str, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = subprocess.run(nsexec(ns, sys.executable, "-c",
                                  f"import urllib.request,sys;"
                                  f"sys.exit(0 if urllib.request.urlopen('http://{addr}/healthz/ready',"
                                  f"timeout=2).status==200 else 1)"), capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} not ready")


def setup_hosts(tmp: pathlib.Path) -> None:
    """The two hosts, the capture rule and the peers; proxies come and go per run."""
    for ns in (C, S):
        sh("ip", "netns", "add", ns)
        made.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", C, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0",
       "netns", S)
    sh("ip", "-n", C, "addr", "add", f"{C_IP}/24", "dev", "veth0")
    sh("ip", "-n", S, "addr", "add", f"{S_IP}/24", "dev", "veth0")
    sh("ip", "-n", C, "link", "set", "veth0", "up")
    sh("ip", "-n", S, "link", "set", "veth0", "up")
    sh(*nsexec(C, "iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "!", "-o", "lo",
               "-m", "multiport", "!", "--dports", f"15008,{IPERF_D},{SOCKPERF_D},{ECHO_D},{CONN_D}",
               "-j", "REDIRECT", "--to-ports", "15001"))
    # 10,000 held tunnels need 10,000 descriptors in each proxy: the limit is inherited.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for port in (IPERF, IPERF_D):
        spawn(S, "iperf3", "-s", "-B", S_IP, "-p", str(port), stdout=subprocess.DEVNULL)
    for port in (SOCKPERF, SOCKPERF_D):
        spawn(S, "sockperf", "sr", "--tcp", "-i", S_IP, "-p", str(port),
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    echo = spawn(S, sys.executable, str(HERE / "peers.py"), "echo", str(ECHO), str(ECHO_D),
                 stdout=subprocess.PIPE, text=True)
    assert echo.stdout is not None and echo.stdout.readline().strip() == "listening"
    global CONNRATE
    CONNRATE = str(tmp / "connrate")
    sh("cc", "-O2", "-pthread", "-o", CONNRATE, str(HERE / "connrate.c"))
    spawn(S, CONNRATE, "serve", str(CONN), str(CONN_D))


def start_ambit(bin_dir: pathlib.Path, tmp: pathlib.Path) -> Pair:
    """Two `ambit-ztunnel`s: the client host's with capture, the server host's."""
    if not (tmp / "ca").exists():
        sh(str(bin_dir / "ambitctl"), "ca", "init", "--dir", str(tmp / "ca"))
    (tmp / "local.yaml").write_text(
        "workloads:\n"
        f"- {{uid: c, name: client, namespace: bench, serviceAccount: client, "
        f"workloadIps: [{C_IP}], node: node-c}}\n"
        f"- {{uid: s, name: server, namespace: bench, serviceAccount: server, "
        f"workloadIps: [{S_IP}], node: node-s}}\n")
    env = dict(os.environ, RUST_LOG="info")
    common = ["--config", str(tmp / "local.yaml"), "--ca-dir", str(tmp / "ca"), "--socks5", "off",
              "--metrics", "127.0.0.1:15020", "--readiness", "127.0.0.1:15021", "--admin", "off"]
    zt = str(bin_dir / "ambit-ztunnel")
    wrap = os.environ.get("AMBIT_BENCH_WRAP_CLIENT", "").split()
    client = spawn(C, *wrap, zt, "--node", "node-c",
                   "--outbound-capture", "127.0.0.1:15001", *common,
                   env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "client.log", "ab"))
    wrap_server = os.environ.get("AMBIT_BENCH_WRAP_SERVER", "").split()
    server = spawn(S, *wrap_server, zt, "--node", "node-s", *common,
                   env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "ab"))
    wait_ready(C, "127.0.0.1:15021", "client proxy")
    wait_ready(S, "127.0.0.1:15021", "server proxy")
    # The proxies' pids: `ip netns exec` execs its command, so they are Popen's.
    return client, server


def start_ztunnel(binary: pathlib.Path, tmp: pathlib.Path) -> Pair:
    """Istio's ztunnel in the same places, one per host in dedicated mode (a proxy for that
    host's one workload, as the capture rule needs): its local-config file, its test CA
    (`FAKE_CA`, which needs a build with `--features testing`), access logs at info, no
    original-source spoofing (the hosts are routed, not transparent)."""
    (tmp / "ztunnel.yaml").write_text(
        "workloads:\n"
        f"- {{uid: c, name: client, namespace: bench, serviceAccount: client, "
        f"workloadIps: [{C_IP}], node: node-c, protocol: HBONE, network: '', services: {{}}}}\n"
        f"- {{uid: s, name: server, namespace: bench, serviceAccount: server, "
        f"workloadIps: [{S_IP}], node: node-s, protocol: HBONE, network: '', services: {{}}}}\n")
    pair = []
    for ns, node, name in ((C, "node-c", "client"), (S, "node-s", "server")):
        env = dict(os.environ, RUST_LOG="info", FAKE_CA="true", XDS_ADDRESS="", CA_ADDRESS="",
                   LOCAL_XDS_PATH=str(tmp / "ztunnel.yaml"), PROXY_MODE="dedicated",
                   PROXY_WORKLOAD_INFO=f"bench/{name}/{name}", NODE_NAME=node,
                   ENABLE_ORIG_SRC="false")
        log = open(tmp / f"ztunnel-{name}.log", "ab")  # ztunnel logs to stdout
        pair.append(spawn(ns, str(binary), env=env, stdout=log, stderr=log))
    wait_ready(C, "127.0.0.1:15021", "client ztunnel")
    wait_ready(S, "127.0.0.1:15021", "server ztunnel")
    return pair[0], pair[1]


def stop(pair: Pair | list[subprocess.Popen]) -> None:
    """SIGTERM, then wait (then SIGKILL): the next pair binds the same ports."""
    for p in pair:
        p.terminate()
    for p in pair:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def iperf(port: int, secs: int, *extra: str) -> float:
    for _ in range(50):  # the server may still be starting
        r = subprocess.run(nsexec(C, "iperf3", "-c", S_IP, "-p", str(port), "-t", str(secs), "-J",
                                  *extra), capture_output=True, text=True)
        if r.returncode == 0:
            return json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
        time.sleep(0.1)
    raise SystemExit(f"iperf3 failed: {r.stdout[-500:]}")


def sockperf(port: int, secs: int) -> tuple[float, float]:
    out = ""
    for _ in range(50):
        r = subprocess.run(nsexec(C, "sockperf", "pp", "--tcp", "-i", S_IP, "-p", str(port),
                                  "-t", str(secs), "-m", "64"), capture_output=True, text=True)
        out = r.stdout + r.stderr
        if r.returncode == 0 and "percentile 50.000" in out:
            break
        time.sleep(0.1)
    p = {k: float(v) for k, v in re.findall(r"percentile (\d+\.\d+) =\s+([\d.]+)", out)}
    if "50.000" not in p:
        raise SystemExit(f"sockperf failed: {out[-500:]}")
    return p["50.000"], p["99.000"]


def connrate(port: int, secs: float) -> float:
    for _ in range(50):  # the server may still be starting
        r = subprocess.run(nsexec(C, CONNRATE, "client", S_IP, str(port), str(secs)),
                           capture_output=True, text=True)
        if r.returncode == 0:
            return float(r.stdout.strip())
        time.sleep(0.1)
    raise SystemExit(f"connrate to port {port} failed: {r.stderr.strip()}")


def held_tunnels(client: subprocess.Popen, server: subprocess.Popen, n: int) -> tuple[float, float]:
    before = rss_kib(client.pid), rss_kib(server.pid)
    h = spawn(C, sys.executable, str(HERE / "peers.py"), "hold", S_IP, str(ECHO), str(n),
              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert h.stdout is not None and h.stdin is not None
    if h.stdout.readline().strip() != "held":
        raise SystemExit("could not hold the tunnels")
    time.sleep(1)  # settle: the last tunnels' first bytes are still being logged and counted
    after = rss_kib(client.pid), rss_kib(server.pid)
    h.stdin.close()
    h.wait(timeout=60)
    return ((after[0] - before[0]) * 1024 / n, (after[1] - before[1]) * 1024 / n)


def one_run(client, server, quick: bool, held: int, only_held: bool = False,
            only_conns: float = 0) -> dict:
    secs = 3 if quick else 10
    out: dict = {}
    if only_conns:
        out["conn_rate_mesh"] = connrate(CONN, only_conns)
        out["connections"] = round(out["conn_rate_mesh"] * only_conns)
        return out
    if only_held:
        out["held_bytes_per_tunnel_client"], out["held_bytes_per_tunnel_server"] = held_tunnels(
            client, server, held)
        return out
    c0, s0 = cpu_seconds(client.pid), cpu_seconds(server.pid)
    t = time.monotonic()
    out["iperf_mesh_gbps"] = iperf(IPERF, secs)
    gb = out["iperf_mesh_gbps"] * (time.monotonic() - t) / 8
    out["cpu_s_per_gb_client"] = (cpu_seconds(client.pid) - c0) / gb
    out["cpu_s_per_gb_server"] = (cpu_seconds(server.pid) - s0) / gb
    out["iperf_direct_gbps"] = iperf(IPERF_D, secs)
    out["iperf_reverse_mesh_gbps"] = iperf(IPERF, secs, "-R")
    out["iperf_p4_mesh_gbps"] = iperf(IPERF, secs, "-P", "4")
    pp = 3 if quick else 5
    out["sockperf_direct_p50_us"], out["sockperf_direct_p99_us"] = sockperf(SOCKPERF_D, pp)
    out["sockperf_mesh_p50_us"], out["sockperf_mesh_p99_us"] = sockperf(SOCKPERF, pp)
    out["conn_rate_direct"] = connrate(CONN_D, 2 if quick else 5)
    out["conn_rate_mesh"] = connrate(CONN, 2 if quick else 5)
    out["held_bytes_per_tunnel_client"], out["held_bytes_per_tunnel_server"] = held_tunnels(
        client, server, held)
    return out


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "—"


def table(meds: dict[str, dict], direct: dict, n_runs: int) -> list[str]:
    """The figures as a Markdown table: direct, each pair, and ambit / ztunnel when both ran."""
    kinds = list(meds)
    both = "ztunnel" in meds and "ambit" in meds
    a, z = meds.get("ambit", {}), meds.get("ztunnel", {})

    def pair(m: dict, key: str, fmt: str = "{:.0f}") -> str:
        return f"{fmt.format(m[key + '_client'])} / {fmt.format(m[key + '_server'])}"

    def pair_ratio(key: str) -> str:
        return f"{ratio(a[key + '_client'], z[key + '_client'])} / " \
               f"{ratio(a[key + '_server'], z[key + '_server'])}"

    def added(m: dict) -> float:
        return m["sockperf_mesh_p50_us"] - direct["sockperf_direct_p50_us"]

    rows: list[tuple[str, object, dict[str, str], str]] = []

    def row(name: str, d: object, cell, r) -> None:
        rows.append((name, d, {k: cell(meds[k]) for k in kinds}, r() if both else ""))

    f2 = lambda v: f"{v:.2f}"  # noqa: E731
    row("iperf3 one stream, Gbit/s", f2(direct["iperf_direct_gbps"]),
        lambda m: f2(m["iperf_mesh_gbps"]), lambda: ratio(a["iperf_mesh_gbps"], z["iperf_mesh_gbps"]))
    row("iperf3 -R, Gbit/s", "—", lambda m: f2(m["iperf_reverse_mesh_gbps"]),
        lambda: ratio(a["iperf_reverse_mesh_gbps"], z["iperf_reverse_mesh_gbps"]))
    row("iperf3 -P 4, Gbit/s", "—", lambda m: f2(m["iperf_p4_mesh_gbps"]),
        lambda: ratio(a["iperf_p4_mesh_gbps"], z["iperf_p4_mesh_gbps"]))
    row("sockperf 64 B half-RTT p50, µs (added over direct)", f2(direct["sockperf_direct_p50_us"]),
        lambda m: f"{m['sockperf_mesh_p50_us']:.1f} (+{added(m):.1f})",
        lambda: f"{ratio(added(a), added(z))} the added")
    row("sockperf p99, µs", f2(direct["sockperf_direct_p99_us"]),
        lambda m: f"{m['sockperf_mesh_p99_us']:.1f}",
        lambda: ratio(a["sockperf_mesh_p99_us"], z["sockperf_mesh_p99_us"]))
    row("sequential new connections /s", f"{direct['conn_rate_direct']:.0f}",
        lambda m: f"{m['conn_rate_mesh']:.0f}", lambda: ratio(a["conn_rate_mesh"], z["conn_rate_mesh"]))
    row("RSS idle, KiB (client / server)", "—", lambda m: pair(m, "rss_idle_kib"),
        lambda: pair_ratio("rss_idle_kib"))
    row("RSS per idle captured tunnel, B (client / server)", "—",
        lambda m: pair(m, "held_bytes_per_tunnel"), lambda: pair_ratio("held_bytes_per_tunnel"))
    row("CPU-seconds per GB (client / server)", "—",
        lambda m: pair(m, "cpu_s_per_gb", "{:.2f}"), lambda: pair_ratio("cpu_s_per_gb"))
    head = ["figure (medians of %d)" % n_runs, "direct", *(f"{k} pair" for k in kinds)]
    if both:
        head.append("ambit / ztunnel")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, d, cells, r in rows:
        out.append("| " + " | ".join([name, str(d), *cells.values(), *([r] if both else [])]) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--held", type=int, default=10_000, help="idle tunnels to hold")
    ap.add_argument("--bin-dir", default=str(REPO / "target" / "release"))
    ap.add_argument("--ztunnel", metavar="BIN",
                    help="also run Istio's ztunnel (built with --features testing, for its test "
                         "CA) in the same places, alternating with ambit run by run")
    ap.add_argument("--json", help="write the medians (and every run) here")
    ap.add_argument("--only-held", action="store_true",
                    help="only the held-tunnels figure (for a heap profile of a proxy: "
                         "AMBIT_BENCH_WRAP_CLIENT or AMBIT_BENCH_WRAP_SERVER='heaptrack -o FILE' "
                         "runs it under a profiler)")
    ap.add_argument("--only-conns", type=float, default=0, metavar="SECS",
                    help="only sequential new connections for SECS (for an instruction count: "
                         "AMBIT_BENCH_WRAP_CLIENT='valgrind --tool=callgrind "
                         "--callgrind-out-file=F'; two lengths give the cost per connection)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, iptables)")
    if args.ztunnel and not os.access(args.ztunnel, os.X_OK):
        raise SystemExit(f"--ztunnel {args.ztunnel}: not an executable")
    ensure_tools()
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ambit-bench-netns-"))
    setup_hosts(tmp)
    bin_dir = pathlib.Path(args.bin_dir)
    starts = {"ambit": lambda: start_ambit(bin_dir, tmp)}
    if args.ztunnel:
        starts["ztunnel"] = lambda: start_ztunnel(pathlib.Path(args.ztunnel), tmp)
    held = args.held if not args.quick else min(args.held, 1000)
    runs: dict[str, list[dict]] = {k: [] for k in starts}
    for _ in range(args.runs):
        for kind, start in starts.items():
            client, server = start()
            idle = rss_kib(client.pid), rss_kib(server.pid)
            r = one_run(client, server, args.quick, held, args.only_held, args.only_conns)
            r["rss_idle_kib_client"], r["rss_idle_kib_server"] = idle
            runs[kind].append(r)
            stop((client, server))
    if args.only_held or args.only_conns:
        print(json.dumps(runs if args.ztunnel else runs["ambit"]))
        return
    meds = {k: {f: statistics.median(r[f] for r in rs) for f in rs[0]} for k, rs in runs.items()}
    every = [r for rs in runs.values() for r in rs]
    direct = {f: statistics.median(r[f] for r in every) for f in every[0] if "direct" in f}
    print()
    print("\n".join(table(meds, direct, args.runs)))
    print(f"\nlogs in {tmp}")
    if args.json:
        out = {"median": meds["ambit"] | direct, "direct": direct, "runs": runs["ambit"]}
        if args.ztunnel:
            out["ztunnel"] = {"median": meds["ztunnel"] | direct, "runs": runs["ztunnel"]}
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
