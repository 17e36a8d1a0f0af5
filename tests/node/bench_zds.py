"""Benchmark: hand N pods (each a network namespace of its own) to `ambit-ztunnel` over ZDS and
take them away again, timing each add and del as the node agent sees it (request to ack), and
the proxy's RSS with every pod's listeners open.

    sudo .venv/bin/python tests/node/bench_zds.py --pods 1000 [--binary target/release/ambit-ztunnel]

Prints medians and p99 of add and del, and RSS per pod (RSS with N pods minus RSS with none,
divided by N). Not part of the test suite: it is a measurement.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_cni import FakeCni  # noqa: E402
from test_inpod import REPO, http_get, wait_until  # noqa: E402


def rss_kb(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--binary", default=str(REPO / "target" / "release" / "ambit-ztunnel"))
    ap.add_argument("--dns", action="store_true", help="a DNS proxy in every pod too")
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ambit-bench-zds-"))
    tag = os.getpid() % 10000
    names = [f"ambz-{tag}-{i}" for i in range(args.pods)]
    lines = ["workloads:"]
    for i in range(args.pods):
        ip = f"10.{200 + i // 65536}.{(i // 256) % 256}.{i % 256}"
        lines.append(f"- {{uid: pod-{i}, name: pod-{i}, namespace: bench, serviceAccount: sa, "
                     f"workloadIps: [{ip}], node: n}}")
    (tmp / "local.yaml").write_text("\n".join(lines) + "\n")
    (tmp / "resolv.conf").write_text("nameserver 127.0.0.53\n")
    subprocess.run([str(REPO / "target" / "debug" / "ambitctl"), "ca", "init", "--dir",
                    str(tmp / "ca")], check=True, capture_output=True)
    made = []
    cni = FakeCni(str(tmp / "zds.sock"))
    env = dict(os.environ, INPOD_UDS=str(tmp / "zds.sock"), RUST_LOG="warn")
    if not args.dns:
        env["ISTIO_META_DNS_CAPTURE"] = "false"
    proc = subprocess.Popen(
        [args.binary, "--config", str(tmp / "local.yaml"), "--node", "n", "--ca-dir",
         str(tmp / "ca"), "--socks5", "off", "--resolv-conf", str(tmp / "resolv.conf"),
         "--metrics", "127.0.0.1:24020", "--readiness", "127.0.0.1:24021", "--admin", "off"],
        env=env, stderr=open(tmp / "ztunnel.log", "wb"))
    try:
        t0 = time.monotonic()
        for n in names:
            subprocess.run(["ip", "netns", "add", n], check=True)
            made.append(n)
            subprocess.run(["ip", "-n", n, "link", "set", "lo", "up"], check=True)
        print(f"{len(names)} namespaces made in {time.monotonic() - t0:.1f} s", flush=True)
        cni.accept()
        assert cni.snapshot_sent() == ""
        wait_until(lambda: http_get("http://127.0.0.1:24021/healthz/ready")[0] == 200,
                   what="ready")
        # Certificates for every local workload are issued at start; let the RSS settle there.
        base = rss_kb(proc.pid)
        adds = []
        for i, n in enumerate(names):
            t = time.perf_counter()
            err = cni.add(f"pod-{i}", f"pod-{i}", "bench", "sa", f"/var/run/netns/{n}")
            adds.append(time.perf_counter() - t)
            assert err == "", err
        full = rss_kb(proc.pid)
        dels = []
        for i in range(len(names)):
            t = time.perf_counter()
            assert cni.delete(f"pod-{i}") == ""
            dels.append(time.perf_counter() - t)
        after = rss_kb(proc.pid)
        ms = lambda xs, p: pct(xs, p) * 1e3  # noqa: E731
        print(f"pods: {len(names)}  dns: {args.dns}")
        print(f"add: median {statistics.median(adds) * 1e3:.3f} ms, p99 {ms(adds, 0.99):.3f} ms, "
              f"total {sum(adds):.2f} s")
        print(f"del: median {statistics.median(dels) * 1e3:.3f} ms, p99 {ms(dels, 0.99):.3f} ms")
        print(f"RSS: {base} KiB with none, {full} KiB with all, {after} KiB after removing all; "
              f"{(full - base) * 1024 / len(names):.0f} B per pod")
    finally:
        proc.kill()
        proc.wait()
        cni.close()
        for n in made:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


if __name__ == "__main__":
    main()
