"""Push-to-enforced latency of a policy change, over the fake istiod (a benchmark, not a test).

Two ambit-ztunnels joined to the fake; a DENY for the client is pushed and removed N times.
Reported, p50 and p99:
- push -> ACK: from the fake sending the response to it receiving the node's ACK. The node
  ACKs after the policy is applied and the new state published, so new connections are
  refused from then on: this is push-to-enforced, as seen by the control plane.
- push -> refused: from the push until a new connection through the mesh is refused
  (end to end; includes one SOCKS5 + HBONE attempt of polling granularity).

    .venv/bin/python tests/control_plane/bench_push.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from conftest import Mesh, NS, SocksRefused  # noqa: E402


def pct(v: list[float], p: float) -> float:
    s = sorted(v)
    return s[min(len(s) - 1, int(len(s) * p))]


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    with tempfile.TemporaryDirectory() as tmp:
        mesh = Mesh(pathlib.Path(tmp))
        try:
            mesh.push_basic()
            a, b = mesh.start_nodes(RUST_LOG="warn")
            a.wait_ready()
            b.wait_ready()
            deny = {"name": "bench-deny", "namespace": NS, "scope": "NAMESPACE", "action": "DENY",
                    "rules": [{"clauses": [{"matches": [{"principals": ["cluster.local/ns/shop/sa/client"]}]}]}]}
            acked, refused = [], []
            for _ in range(n):
                t0 = time.monotonic()
                nonces = mesh.fake.put_authorization(deny)
                # The response to node B (the destination, which enforces) and its ACK.
                for ack in mesh.fake.wait_acks(nonces):
                    resp = next(r for r in mesh.fake.responses if r.nonce == ack.nonce)
                    if "node-b" in ack.node_id:
                        acked.append(ack.time - resp.time)
                while True:
                    try:
                        mesh.connect(mesh.ip(2, 2)).close()
                    except SocksRefused:
                        refused.append(time.monotonic() - t0)
                        break
                mesh.fake.wait_acks(mesh.fake.remove("authorization", f"{NS}/bench-deny"))
                while True:
                    try:
                        mesh.connect(mesh.ip(2, 2)).close()
                        break
                    except SocksRefused:
                        continue
            ms = lambda v: [x * 1e3 for x in v]  # noqa: E731
            print(f"{n} policy pushes to two ambit-ztunnels via the fake istiod")
            print(f"push -> ACK (enforced for new connections): p50 {statistics.median(ms(acked)):.2f} ms, "
                  f"p99 {pct(ms(acked), 0.99):.2f} ms")
            print(f"push -> a new connection refused (end to end): p50 {statistics.median(ms(refused)):.2f} ms, "
                  f"p99 {pct(ms(refused), 0.99):.2f} ms")
        finally:
            mesh.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
