"""The whole mesh as users run it, one client pod: three hosts (network namespaces on one
bridge) and real peers.

- client host: the client pod's `wrk -t1` (keep-alive HTTP/1.1 GETs to the service VIP
  `reviews:80`, 10.96.0.10), captured by iptables into the host's node proxy
  (`ambit-ztunnel`, access log at info); one pod, so one pooled HBONE connection carries every
  stream to the waypoint;
- waypoint host: the service's waypoint, `ambit-waypoint` (or, with `--envoy`, Envoy 1.40
  configured as Istio programs its waypoint: `benches/envoy/waypoint.yaml`, `--concurrency 2`),
  enforcing one HTTPRoute (`/api` + `x-feature: beta` to v2, else v1 90 / v2 10) and one ALLOW
  AuthorizationPolicy (principal, GET/POST, `/api/*`);
- server host: its node proxy (`ambit-ztunnel`, inbound 15008) and nginx serving v1 and v2
  (two pod addresses, a 1 KiB body naming the version).

    cargo build --release -p ambit-examples --bin ambit-ztunnel --bin ambitctl --bin ambit-waypoint
    sudo python3 benches/netns/mesh.py [--quick] [--runs 3] [--conc 16,64] [--secs 8] \
        [--envoy PATH] [--json out.json]

Every run proves the path first (a routed GET is 200, both versions answer, `x-feature: beta`
is served by v2, DELETE and `/admin` are 403), then warms up 2 s and measures `wrk --latency`
for each client count; any non-2xx answer or socket error under load fails the run. With
`--envoy`, ambit's nodes with Envoy as the waypoint run in the same places, alternating run by
run. Figures per waypoint and client count, medians over the runs: req/s, p50 and p99 (wrk),
the waypoint's CPU (utime + stime from `/proc`, all threads) per request and its RSS at the
end of the window, and each node proxy's CPU per request. Needs root, iproute2, iptables, wrk
and nginx (Debian packages; installed if missing). `AMBIT_BENCH_WRAP_WAYPOINT='valgrind
--tool=callgrind --callgrind-out-file=F'` runs ambit's waypoint under a profiler; the requests
it served are printed per run, so two `--secs` give instructions per request. Every namespace and process it makes is
removed when it ends, however it ends.
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

from bench_netns import (cleanup, cpu_seconds, ensure_tools, made, nsexec, rss_kib, sh, spawn,
                         stop, wait_ready)

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
TAG = os.getpid() % 100000
HUB, C, W, S = (f"ambm-{k}-{TAG}" for k in ("hub", "c", "w", "s"))
CLIENT_IP, WAYPOINT_IP, V1_IP, V2_IP = "10.92.0.1", "10.92.0.2", "10.92.0.4", "10.92.0.5"
VIP = "10.96.0.10"
ISTIOD_IP = "10.92.0.254"  # the fake istiod, on the bridge (Istio ambient column only)
BODY_LEN = 1024
BIN = REPO / "target" / "release"  # --bin-dir

LOCAL_YAML = f"""workloads:
- {{uid: c, name: client, namespace: demo, serviceAccount: client, workloadIps: [{CLIENT_IP}], node: node-c}}
- {{uid: v1, name: reviews-v1, namespace: demo, serviceAccount: reviews, workloadIps: [{V1_IP}], node: node-s, services: {{"demo/reviews.demo.svc.cluster.local": {{80: 8080}}, "demo/reviews-v1.demo.svc.cluster.local": {{80: 8080}}}}}}
- {{uid: v2, name: reviews-v2, namespace: demo, serviceAccount: reviews, workloadIps: [{V2_IP}], node: node-s, services: {{"demo/reviews.demo.svc.cluster.local": {{80: 8080}}, "demo/reviews-v2.demo.svc.cluster.local": {{80: 8080}}}}}}
- {{uid: wp, name: waypoint, namespace: demo, serviceAccount: waypoint, workloadIps: [{WAYPOINT_IP}], node: node-w}}
services:
- {{name: reviews, namespace: demo, hostname: reviews.demo.svc.cluster.local, vips: ["/{VIP}"], ports: {{80: 8080}}, waypoint: {{destination: "/{WAYPOINT_IP}"}}}}
- {{name: reviews-v1, namespace: demo, hostname: reviews-v1.demo.svc.cluster.local, vips: ["/10.96.0.11"], ports: {{80: 8080}}}}
- {{name: reviews-v2, namespace: demo, hostname: reviews-v2.demo.svc.cluster.local, vips: ["/10.96.0.12"], ports: {{80: 8080}}}}
"""

# The same mesh for Istio's ztunnel, as istiod would send it over xDS (tools/fake_istiod's
# YAML: the Workload API's proto fields).
ISTIOD_YAML = f"""workloads:
- {{uid: c, name: client, namespace: demo, service_account: client, addresses: ["{CLIENT_IP}"], node: node-c, tunnel_protocol: HBONE}}
- {{uid: v1, name: reviews-v1, namespace: demo, service_account: reviews, addresses: ["{V1_IP}"], node: node-s, tunnel_protocol: HBONE, services: {{"demo/reviews.demo.svc.cluster.local": {{ports: ["80:8080"]}}, "demo/reviews-v1.demo.svc.cluster.local": {{ports: ["80:8080"]}}}}}}
- {{uid: v2, name: reviews-v2, namespace: demo, service_account: reviews, addresses: ["{V2_IP}"], node: node-s, tunnel_protocol: HBONE, services: {{"demo/reviews.demo.svc.cluster.local": {{ports: ["80:8080"]}}, "demo/reviews-v2.demo.svc.cluster.local": {{ports: ["80:8080"]}}}}}}
- {{uid: wp, name: waypoint, namespace: demo, service_account: waypoint, addresses: ["{WAYPOINT_IP}"], node: node-w, tunnel_protocol: HBONE}}
services:
- {{name: reviews, namespace: demo, hostname: reviews.demo.svc.cluster.local, addresses: ["/{VIP}"], ports: ["80:8080"], waypoint: {{address: "/{WAYPOINT_IP}", hbone_mtls_port: 15008}}}}
- {{name: reviews-v1, namespace: demo, hostname: reviews-v1.demo.svc.cluster.local, addresses: ["/10.96.0.11"], ports: ["80:8080"]}}
- {{name: reviews-v2, namespace: demo, hostname: reviews-v2.demo.svc.cluster.local, addresses: ["/10.96.0.12"], ports: ["80:8080"]}}
"""



def setup_hosts(tmp: pathlib.Path, ztunnel: str | None) -> None:
    """Three hosts on one bridge (in a hub namespace), capture on the client host, nginx on the
    server host; the proxies come and go per run."""
    for ns in (HUB, C, W, S):
        sh("ip", "netns", "add", ns)
        made.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", HUB, "link", "set", "br0", "up")
    for ns, ips in ((C, [CLIENT_IP]), (W, [WAYPOINT_IP]), (S, [V1_IP, V2_IP])):
        port = "p-" + ns.split("-")[1]
        sh("ip", "-n", HUB, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        sh("ip", "-n", HUB, "link", "set", port, "master", "br0")
        sh("ip", "-n", HUB, "link", "set", port, "up")
        for ip in ips:
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        # Service VIPs are not on the bridge; a route lets connect() start, then capture
        # redirects it.
        sh("ip", "-n", ns, "route", "add", "default", "dev", "eth0")
    sh(*nsexec(C, "iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "!", "-o", "lo",
               "-m", "multiport", "!", "--dports", "15008,15012", "-j", "REDIRECT",
               "--to-ports", "15001"))  # 15012: the proxies' istiod (Istio exempts by mark)
    for v, ip in (("v1", V1_IP), ("v2", V2_IP)):
        (tmp / v).mkdir()
        head = f"reviews-{v}\n".encode()
        (tmp / v / "body").write_bytes(head + b"r" * (BODY_LEN - len(head)))
    servers = "".join(
        f"server {{ listen {ip}:8080; root {tmp}/{v}; "
        f"location / {{ default_type text/plain; try_files /body =404; }} }}\n"
        for v, ip in (("v1", V1_IP), ("v2", V2_IP)))
    (tmp / "nginx.conf").write_text(
        f"user root;\nworker_processes 1;\npid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/nginx-error.log warn;\nevents {{ worker_connections 4096; }}\n"
        f"http {{ access_log off; keepalive_requests 1000000;\n{servers}}}\n")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    spawn(S, nginx, "-e", str(tmp / "nginx-error.log"), "-c", str(tmp / "nginx.conf"),
          "-g", "daemon off;")
    wait_port(S, V2_IP, 8080, "nginx")
    ambitctl = str(BIN / "ambitctl")
    sh(ambitctl, "ca", "init", "--dir", str(tmp / "ca"))
    sh(ambitctl, "cert", "issue", "--id", "spiffe://cluster.local/ns/demo/sa/waypoint",
       "--ca-dir", str(tmp / "ca"), "--out-dir", str(tmp / "envoy"))
    (tmp / "local.yaml").write_text(LOCAL_YAML)
    # What both waypoints enforce, as ambit-bench-l7's (Envoy's translation: envoy/waypoint.yaml).
    shutil.copy(REPO / "benches" / "l7.yaml", tmp / "l7.yaml")
    if ztunnel:
        start_istiod(tmp)


def start_istiod(tmp: pathlib.Path) -> None:
    """tools/fake_istiod on the bridge: xDS and the CA for Istio's ztunnels, and a certificate
    from the same CA for Envoy as their waypoint. It lives as long as the hosts."""
    sh("ip", "-n", HUB, "addr", "add", f"{ISTIOD_IP}/24", "dev", "br0")
    (tmp / "istiod.yaml").write_text(ISTIOD_YAML)
    py = REPO / ".venv" / "bin" / "python"
    if not os.access(py, os.X_OK):
        raise SystemExit(f"{py} is missing: the fake istiod needs the test venv (scripts/test)")
    istiod = spawn(HUB, str(py), "-m", "tools.fake_istiod", "--config", str(tmp / "istiod.yaml"),
                   "--host", ISTIOD_IP, "--port", "15012", "--token", "bench",
                   "--write-token", str(tmp / "istio-token"),
                   "--root-cert-out", str(tmp / "istio-root.pem"),
                   "--issue", f"spiffe://cluster.local/ns/demo/sa/waypoint={tmp / 'istio-envoy'}",
                   cwd=REPO, stdout=subprocess.PIPE, stderr=open(tmp / "istiod.log", "ab"),
                   text=True)
    assert istiod.stdout is not None
    if not istiod.stdout.readline().startswith("{"):
        raise SystemExit(f"the fake istiod did not start: see {tmp / 'istiod.log'}")


def wait_port(ns: str, ip: str, port: int, what: str) -> None:
    probe = (f"import socket,sys,time\nd=time.monotonic()+30\nwhile time.monotonic()<d:\n"
             f"  try: socket.create_connection(('{ip}',{port}),1).close(); sys.exit(0)\n"
             f"  except OSError: time.sleep(0.05)\nsys.exit(1)\n")
    if subprocess.run(nsexec(ns, sys.executable, "-c", probe)).returncode != 0:
        raise SystemExit(f"{what} is not listening on {ip}:{port}")


def start_nodes(kind: str, tmp: pathlib.Path, ztunnel: str | None) -> list[subprocess.Popen]:
    if kind == "istio":
        assert ztunnel is not None
        return start_ztunnels(tmp, ztunnel)
    env = dict(os.environ, RUST_LOG="info")
    common = ["--config", str(tmp / "local.yaml"), "--ca-dir", str(tmp / "ca"), "--socks5", "off",
              "--metrics", "127.0.0.1:15020", "--readiness", "127.0.0.1:15021", "--admin", "off"]
    zt = str(BIN / "ambit-ztunnel")
    client = spawn(C, zt, "--node", "node-c", "--outbound-capture", "127.0.0.1:15001", *common,
                   env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "node-c.log", "ab"))
    server = spawn(S, zt, "--node", "node-s", *common,
                   env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "node-s.log", "ab"))
    wait_ready(C, "127.0.0.1:15021", "client node proxy")
    wait_ready(S, "127.0.0.1:15021", "server node proxy")
    return [client, server]


def start_ztunnels(tmp: pathlib.Path, binary: str) -> list[subprocess.Popen]:
    """Istio's ztunnel on each node host, its config and certificates from the fake istiod;
    dedicated mode (no CNI here), access logs at info, no original-source spoofing."""
    pair = []
    for ns, node, pod, ip in ((C, "node-c", "demo/client/client", CLIENT_IP),
                              (S, "node-s", "demo/reviews-v1/reviews", V1_IP)):
        env = dict(os.environ, RUST_LOG="info", XDS_ADDRESS=f"https://{ISTIOD_IP}:15012",
                   CA_ADDRESS=f"https://{ISTIOD_IP}:15012", XDS_ROOT_CA=str(tmp / "istio-root.pem"),
                   CA_ROOT_CA=str(tmp / "istio-root.pem"), AUTH_TOKEN=str(tmp / "istio-token"),
                   CLUSTER_ID="Kubernetes", PROXY_MODE="dedicated", PROXY_WORKLOAD_INFO=pod,
                   NODE_NAME=node, INSTANCE_IP=ip, POD_NAME=f"ztunnel-{node}",
                   POD_NAMESPACE="istio-system", SERVICE_ACCOUNT="ztunnel",
                   ENABLE_ORIG_SRC="false")
        log = open(tmp / f"ztunnel-{node}.log", "ab")  # ztunnel logs to stdout
        pair.append(spawn(ns, binary, env=env, stdout=log, stderr=log))
    wait_ready(C, "127.0.0.1:15021", "client ztunnel")
    wait_ready(S, "127.0.0.1:15021", "server ztunnel")
    return pair


def start_waypoint(kind: str, tmp: pathlib.Path, envoy: str | None) -> subprocess.Popen:
    if kind == "ambit":
        # No access log: Istio's waypoint writes none unless the Telemetry API asks for it.
        wrap = os.environ.get("AMBIT_BENCH_WRAP_WAYPOINT", "").split()
        wp = spawn(W, *wrap, str(BIN / "ambit-waypoint"), "--config", str(tmp / "local.yaml"),
                   "--l7", str(tmp / "l7.yaml"), "--name", "waypoint", "--namespace", "demo",
                   "--ca-dir", str(tmp / "ca"), "--hbone", f"{WAYPOINT_IP}:15008",
                   "--metrics", "off", "--readiness", "127.0.0.1:15021",
                   env=dict(os.environ, RUST_LOG="warn"), stdout=subprocess.DEVNULL,
                   stderr=open(tmp / "waypoint.log", "ab"))
        wait_ready(W, "127.0.0.1:15021", "ambit-waypoint")
        return wp
    assert envoy is not None
    cfg = (REPO / "benches" / "envoy" / "waypoint.yaml").read_text()
    certs = tmp / ("istio-envoy" if kind == "istio" else "envoy")
    for k, v in (("{dir}", str(certs)), ("{waypoint}", WAYPOINT_IP), ("{v1}", V1_IP),
                 ("{v2}", V2_IP)):
        cfg = cfg.replace(k, v)
    (tmp / "envoy.yaml").write_text(cfg)
    wp = spawn(W, envoy, "-c", str(tmp / "envoy.yaml"), "--concurrency", "2", "--log-level",
               "warn", "--base-id", str(TAG), stdout=subprocess.DEVNULL,
               stderr=open(tmp / "envoy.log", "ab"))
    wait_port(W, WAYPOINT_IP, 15008, "Envoy")
    return wp


CHECK_REQUESTS = 100 + 5 + 2  # what check_path sends


def check_path() -> None:
    """The waypoint under test routes and enforces what it was given, through the capture."""
    script = f"""
import http.client, json
def get(path, method="GET", headers={{}}):
    c = http.client.HTTPConnection("{VIP}", 80, timeout=10)
    c.request(method, path, headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body.split(b"\\n", 1)[0].decode(errors="replace"), len(body)
seen = [get("/api/reviews/42") for _ in range(100)]
print(json.dumps({{"plain": seen, "beta": [get("/api/reviews/42", headers={{"x-feature": "beta"}})
    for _ in range(5)], "delete": get("/api/reviews/42", "DELETE")[0],
    "admin": get("/admin")[0]}}))
"""
    r = subprocess.run(nsexec(C, sys.executable, "-c", script), capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"the check through the mesh failed: {r.stderr.strip()[-800:]}")
    got = json.loads(r.stdout)
    plain = got["plain"]
    bad = [p for p in plain if p[0] != 200 or p[2] != BODY_LEN]
    if bad:
        raise SystemExit(f"routed GETs that were not 200 with {BODY_LEN} B: {bad[:3]}")
    versions = {p[1] for p in plain}
    if versions != {"reviews-v1", "reviews-v2"}:
        raise SystemExit(f"100 routed GETs reached {versions}, not both versions")
    if any(b[:2] != [200, "reviews-v2"] for b in got["beta"]):
        raise SystemExit(f"x-feature: beta was not served by v2: {got['beta']}")
    if got["delete"] != 403 or got["admin"] != 403:
        raise SystemExit(f"DELETE / /admin gave {got['delete']} / {got['admin']}, not 403")


def wrk(conc: int, secs: int) -> dict:
    r = subprocess.run(nsexec(C, "wrk", "-t1", f"-c{conc}", f"-d{secs}s", "--latency",
                              f"http://{VIP}/api/reviews/42"),
                       capture_output=True, text=True, timeout=secs + 60)
    out = r.stdout
    if r.returncode != 0 or "Requests/sec" not in out:
        raise SystemExit(f"wrk failed: {out[-500:]} {r.stderr[-500:]}")
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"errors under load:\n{out}")
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    lat = {p: float(v) * unit[u] for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)$",
                                                           out, re.M)}
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": lat["50"], "p99_ms": lat["99"], "requests": total}


def one_run(kind: str, tmp: pathlib.Path, envoy: str | None, ztunnel: str | None,
            concs: list[int], secs: int) -> dict:
    nodes = start_nodes(kind, tmp, ztunnel)
    wp = start_waypoint(kind, tmp, envoy)
    try:
        check_path()
        # Every request the waypoint sees is counted, so that an instruction count of the
        # whole process (AMBIT_BENCH_WRAP_WAYPOINT) divides by them: the check's 107, the
        # warm-up's and the measured ones.
        seen = CHECK_REQUESTS + wrk(concs[0], 2)["requests"]  # warm-up: pools, allocator
        out: dict = {}
        for conc in concs:
            pids = {"waypoint": wp.pid, "node_c": nodes[0].pid, "node_s": nodes[1].pid}
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            res = wrk(conc, secs)
            for k, p in pids.items():
                res[f"{k}_cpu_us_per_req"] = (cpu_seconds(p) - before[k]) * 1e6 / res["requests"]
            res["waypoint_rss_kib"] = rss_kib(wp.pid)
            out[conc] = res
            seen += res["requests"]
        out["waypoint_requests"] = seen
        return out
    finally:
        stop([wp, *nodes])


LABELS = {"ambit": "ambit (nodes and waypoint)", "envoy": "ambit nodes, Envoy waypoint",
          "istio": "Istio ambient (ztunnel nodes, Envoy waypoint)"}


def table(meds: dict[str, dict[int, dict]], concs: list[int], n: int) -> list[str]:
    head = ["mesh", "clients", "req/s", "p50 ms", "p99 ms", "waypoint CPU µs/req",
            "waypoint RSS MiB", "node C / node S CPU µs/req"]
    out = [f"medians of {n} run(s)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for conc in concs:
        for k, m in ((k, meds[k][conc]) for k in meds):
            out.append(f"| {LABELS[k]} | {conc} | {m['rps']:.0f} | {m['p50_ms']:.2f} | "
                       f"{m['p99_ms']:.2f} | {m['waypoint_cpu_us_per_req']:.1f} | "
                       f"{m['waypoint_rss_kib'] / 1024:.1f} | {m['node_c_cpu_us_per_req']:.1f} / "
                       f"{m['node_s_cpu_us_per_req']:.1f} |")
    for other in ("istio", "envoy"):
        if other not in meds:
            continue
        out += ["", f"| ambit / {LABELS[other]} | clients | req/s | p50 | p99 | "
                "waypoint CPU / req | waypoint RSS | node C + S CPU / req |", "|---" * 8 + "|"]
        for conc in concs:
            a, e = meds["ambit"][conc], meds[other][conc]
            r = lambda k: f"{a[k] / e[k]:.2f}x"  # noqa: E731
            nodes = lambda m: m["node_c_cpu_us_per_req"] + m["node_s_cpu_us_per_req"]  # noqa: E731
            out.append(f"| ratio | {conc} | {r('rps')} | {r('p50_ms')} | {r('p99_ms')} | "
                       f"{r('waypoint_cpu_us_per_req')} | {r('waypoint_rss_kib')} | "
                       f"{nodes(a) / nodes(e):.2f}x |")
    return out


def main() -> None:
    global BIN
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one run of 3 s per client count")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conc", default="16,64", help="client counts (wrk -c), comma-separated")
    ap.add_argument("--secs", type=int, default=8, help="measured seconds per client count")
    ap.add_argument("--bin-dir", default=str(BIN))
    ap.add_argument("--envoy", metavar="BIN",
                    help="also run ambit's nodes with Envoy as the waypoint, alternating")
    ap.add_argument("--ztunnel", metavar="BIN",
                    help="with --envoy, also run Istio ambient: Istio's ztunnel as both node "
                         "proxies (config and certificates from tools/fake_istiod) and Envoy")
    ap.add_argument("--json", help="write every run and the medians here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, iptables)")
    if args.envoy and not os.access(args.envoy, os.X_OK):
        raise SystemExit(f"--envoy {args.envoy}: not an executable")
    if args.ztunnel and not (args.envoy and os.access(args.ztunnel, os.X_OK)):
        raise SystemExit(f"--ztunnel {args.ztunnel}: needs --envoy, and an executable")
    BIN = pathlib.Path(args.bin_dir)
    for b in ("ambit-ztunnel", "ambitctl", "ambit-waypoint"):
        if not os.access(BIN / b, os.X_OK):
            raise SystemExit(f"{BIN / b} is missing: build it first (see the command above)")
    concs = [int(c) for c in args.conc.split(",")]
    runs_n, secs = (1, 3) if args.quick else (args.runs, args.secs)
    ensure_tools({"wrk": "wrk", "nginx": "nginx-light", "iptables": "iptables", "ip": "iproute2"})
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ambit-bench-mesh-"))
    setup_hosts(tmp, args.ztunnel)
    kinds = ["ambit", *(["envoy"] if args.envoy else []), *(["istio"] if args.ztunnel else [])]
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for i in range(runs_n):
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            runs[kind].append(one_run(kind, tmp, args.envoy, args.ztunnel, concs, secs))
    meds = {k: {c: {f: statistics.median(r[c][f] for r in rs) for f in rs[0][c]} for c in concs}
            for k, rs in runs.items()}
    print("\n".join(table(meds, concs, runs_n)))
    print("\nrequests each waypoint served, per run: " +
          "; ".join(f"{k} {[r['waypoint_requests'] for r in rs]}" for k, rs in runs.items()))
    print(f"logs in {tmp}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"median": meds, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
