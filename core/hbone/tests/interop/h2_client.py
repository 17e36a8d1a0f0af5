#!/usr/bin/env python3
"""An independent HBONE client built from Python's ssl and the h2 library (no ambit code).

Modes:
  echo        CONNECT to the target, send bytes, half-close, expect them echoed back.
  malformed   On one connection: a GET, a CONNECT without :authority and a CONNECT with
              :path/:scheme; each must be answered 400 or reset. Then a valid CONNECT on the
              same connection must still echo (the server survived).
Prints one line per step; exits non-zero on any unexpected outcome.
"""
import argparse
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def connect(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # SPIFFE: the identity is the URI SAN, checked below
    ctx.load_verify_locations(args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["h2"])
    host, port = args.server.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=20)
    tls = ctx.wrap_socket(sock)
    if tls.selected_alpn_protocol() != "h2":
        sys.exit(f"ALPN: got {tls.selected_alpn_protocol()!r}")
    uris = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
    if args.expect_id not in uris:
        sys.exit(f"server identity {uris} is not {args.expect_id}")
    print(f"tls ok: {tls.version()} peer {uris[0]}")
    config = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    return tls, conn


def run_stream(tls, conn, headers, payload=None):
    """Sends one request; returns ('status', code, body) or ('reset', error_code, b'')."""
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers, end_stream=False)
    tls.sendall(conn.data_to_send())
    status, body, sent = None, bytearray(), payload is None
    while True:
        data = tls.recv(65536)
        if not data:
            sys.exit("server closed the connection")
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                status = int(dict(ev.headers)[b":status"])
                if status == 200 and not sent:
                    conn.send_data(sid, payload, end_stream=True)
                    sent = True
                elif status != 200:
                    pass
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                tls.sendall(conn.data_to_send())
                return ("status", status, bytes(body))
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                return ("reset", int(ev.error_code), b"")
        tls.sendall(conn.data_to_send())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["echo", "malformed"])
    p.add_argument("--server", required=True)
    p.add_argument("--authority", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--expect-id", required=True)
    args = p.parse_args()
    tls, conn = connect(args)
    connect_headers = [(":method", "CONNECT"), (":authority", args.authority)]
    if args.mode == "malformed":
        cases = {
            "get": [(":method", "GET"), (":scheme", "https"), (":path", "/"),
                    (":authority", args.authority)],
            "no-authority": [(":method", "CONNECT")],
            "connect-with-path": connect_headers + [(":scheme", "https"), (":path", "/x")],
        }
        for name, headers in cases.items():
            kind, code, _ = run_stream(tls, conn, headers)
            print(f"{name}: {kind} {code}")
            if not (kind == "reset" or code == 400):
                sys.exit(f"{name}: expected 400 or a reset, got {kind} {code}")
    payload = bytes(range(256)) * 64
    kind, code, body = run_stream(tls, conn, connect_headers, payload)
    if (kind, code) != ("status", 200) or body != payload:
        sys.exit(f"echo: got {kind} {code} with {len(body)} bytes")
    print(f"echo ok: {len(body)} bytes")


if __name__ == "__main__":
    main()
