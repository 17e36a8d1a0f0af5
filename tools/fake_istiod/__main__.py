"""Run the fake istiod by hand: ``python -m tools.fake_istiod --config mesh.yaml``.

Prints one JSON line on stdout once listening (address, port, root cert path,
token file), then serves until SIGINT/SIGTERM. SIGHUP (or a change of the file
with --watch) reloads the YAML and pushes the differences.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import threading

from .server import DEFAULT_VALIDITY_S, FakeIstiod


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.fake_istiod", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", help="YAML file: workloads, services, authorizations")
    p.add_argument("--watch", action="store_true", help="reload --config when it changes")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=15012,
                   help="listen port (default 15012, istiod's; 0 = pick one)")
    p.add_argument("--token", help="expected bearer token (default: accept any)")
    p.add_argument("--token-file", help="read the expected bearer token from this file")
    p.add_argument("--write-token", metavar="PATH",
                   help="write the expected token to PATH (no newline), for AUTH_TOKEN")
    p.add_argument("--cluster-id", default="Kubernetes",
                   help="expected clusterid header (default Kubernetes; '' = not checked)")
    p.add_argument("--trust-domain", default="cluster.local")
    p.add_argument("--state-dir", help="directory for root-cert.pem (default: a temp dir)")
    p.add_argument("--root-cert-out", metavar="PATH", help="also copy the root cert to PATH")
    p.add_argument("--intermediate", action="store_true", help="issue from an intermediate CA")
    p.add_argument("--server-san", action="append", default=[],
                   help="extra DNS name/IP for the serving certificate (repeatable)")
    p.add_argument("--ca-validity", type=int, help="force workload cert validity (seconds)")
    p.add_argument("--issue", action="append", default=[], metavar="SPIFFE_ID=DIR",
                   help="write cert-chain.pem, key.pem and root-cert.pem for SPIFFE_ID to DIR, "
                        "signed by this CA (for a peer with file certificates; repeatable)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    args = p.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    token = args.token
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    fake = FakeIstiod(trust_domain=args.trust_domain, token=token,
                      cluster_id=args.cluster_id or None, host=args.host, port=args.port,
                      intermediate=args.intermediate, server_sans=args.server_san,
                      state_dir=args.state_dir)
    fake.ca_validity_override = args.ca_validity
    if args.config:
        fake.load_yaml(args.config)
    token_file = None
    if args.write_token:
        if token is None:
            p.error("--write-token needs --token or --token-file")
        token_file = str(fake.write_token_file(args.write_token))
    for spec in args.issue:
        spiffe, sep, out = spec.partition("=")
        if not sep or not spiffe.startswith("spiffe://") or not out:
            p.error(f"--issue {spec!r}: expected spiffe://TRUST_DOMAIN/ns/NS/sa/SA=DIR")
        key_pem, chain_pem = fake.ca.issue(spiffe, DEFAULT_VALIDITY_S)
        os.makedirs(out, exist_ok=True)
        for name, data in (("cert-chain.pem", chain_pem), ("key.pem", key_pem),
                           ("root-cert.pem", fake.root_pem.encode())):
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)
    if args.root_cert_out:
        shutil.copyfile(fake.root_cert_path, args.root_cert_out)
    fake.start()
    print(json.dumps({"address": fake.address, "port": fake.port,
                      "root_cert": str(args.root_cert_out or fake.root_cert_path),
                      "token_file": token_file}), flush=True)

    done = threading.Event()
    reload_now = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_now.set())
    mtime = os.stat(args.config).st_mtime if args.config else None
    while not done.wait(1.0):
        if args.config and args.watch:
            try:
                m = os.stat(args.config).st_mtime
            except OSError:
                m = mtime
            if m != mtime:
                mtime = m
                reload_now.set()
        if reload_now.is_set() and args.config:
            reload_now.clear()
            try:
                nonces = fake.load_yaml(args.config)
                logging.info("reloaded %s: %d response(s) pushed", args.config, len(nonces))
            except Exception as e:  # keep serving the previous state
                logging.error("reload of %s failed: %s", args.config, e)
    fake.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
