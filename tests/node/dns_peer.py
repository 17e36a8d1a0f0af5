"""DNS peers for the in-pod tests, on dnspython (an independent DNS implementation):

- ``upstream ADDR``: the cluster's resolver stand-in, UDP and TCP on ADDR:53. It answers
  ``example.test`` A with 192.0.2.7, anything else NXDOMAIN, and an UPDATE with NOERROR (opcode
  UPDATE), as a resolver that accepts dynamic updates would.
- ``query SERVER NAME TYPE udp|tcp``: one query, the answer printed as JSON;
- ``update SERVER``: one RFC 2136 UPDATE of ``example.test``, the answer as JSON;
- ``garbage SERVER``: junk bytes over UDP, then a real query, printed as JSON.
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import threading

import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update


def respond(wire: bytes) -> bytes:
    q = dns.message.from_wire(wire)
    r = dns.message.make_response(q)
    if q.opcode() == dns.opcode.UPDATE:
        r.set_rcode(dns.rcode.NOERROR)
        return r.to_wire()
    question = q.question[0]
    if question.name.to_text() == "example.test." and question.rdtype == dns.rdatatype.A:
        r.answer.append(dns.rrset.from_text("example.test.", 60, "IN", "A", "192.0.2.7"))
    else:
        r.set_rcode(dns.rcode.NXDOMAIN)
    return r.to_wire()


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(respond(data), self.client_address)


class Tcp(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            body = self.rfile.read(int.from_bytes(head, "big"))
            out = respond(body)
            self.wfile.write(len(out).to_bytes(2, "big") + out)


def upstream(addr: str) -> None:
    udp = socketserver.ThreadingUDPServer((addr, 53), Udp)
    tcp = socketserver.ThreadingTCPServer((addr, 53), Tcp, bind_and_activate=False)
    tcp.allow_reuse_address = True
    tcp.server_bind()
    tcp.server_activate()
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    print("listening", flush=True)
    udp.serve_forever()


def show(r: dns.message.Message) -> str:
    return json.dumps({
        "rcode": dns.rcode.to_text(r.rcode()),
        "opcode": dns.opcode.to_text(r.opcode()),
        "aa": bool(r.flags & dns.flags.AA),
        "answers": sorted(f"{rr.name} {dns.rdatatype.to_text(rr.rdtype)} {item}"
                          for rr in r.answer for item in rr),
    })


def main() -> None:
    cmd = sys.argv[1]
    if cmd == "upstream":
        upstream(sys.argv[2])
    elif cmd == "query":
        server, name, rtype, proto = sys.argv[2:6]
        q = dns.message.make_query(name, rtype)
        ask = dns.query.tcp if proto == "tcp" else dns.query.udp
        print(show(ask(q, server, timeout=10)))
    elif cmd == "update":
        u = dns.update.UpdateMessage("example.test.")
        u.add("host.example.test.", 60, "A", "192.0.2.9")
        print(show(dns.query.udp(u, sys.argv[2], timeout=10)))
    elif cmd == "garbage":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(10)
        s.sendto(b"\x12\x34" + b"\xff" * 14, (sys.argv[2], 53))
        reply = s.recv(4096)
        r = dns.message.from_wire(reply)
        ok = dns.query.udp(dns.message.make_query("example.test", "A"), sys.argv[2], timeout=10)
        print(json.dumps({"garbage": dns.rcode.to_text(r.rcode()), "id": r.id,
                          "after": json.loads(show(ok))}))


if __name__ == "__main__":
    main()
