"""A stand-in for istio-cni's node agent on the ZDS socket, written from the protocol's
description (Istio's zds.proto and the node agent's documented behaviour), not from ambit's
code: it listens on a Unix ``SOCK_SEQPACKET`` socket, takes the proxy's ``ZdsHello``, and
sends ``WorkloadRequest`` messages one datagram each (an ``add`` with the pod's network
namespace as ``SCM_RIGHTS``), waiting for the ``WorkloadResponse`` ack after every one, as the
agent does.
"""

from __future__ import annotations

import os
import socket
import sys
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools.fake_istiod import protos  # noqa: E402

ACK_TIMEOUT = 10.0


class Rejected(Exception):
    """The proxy answered with an error."""


class FakeCni:
    def __init__(self, path: str):
        self.path = path
        self.pb = protos.load().zds
        if os.path.exists(path):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        self.listener.listen(4)
        self.conn: socket.socket | None = None

    def accept(self, timeout: float = 20.0) -> int:
        """Waits for the proxy to connect; returns the hello's version."""
        self.drop()
        self.listener.settimeout(timeout)
        conn, _ = self.listener.accept()
        conn.settimeout(ACK_TIMEOUT)
        hello = self.pb.ZdsHello()
        hello.ParseFromString(conn.recv(1024))
        self.conn = conn
        return hello.version

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.drop()
        self.listener.close()

    def _ask(self, payload: bytes, fds: list[int] | None = None) -> str:
        assert self.conn is not None, "no proxy connected"
        if fds:
            socket.send_fds(self.conn, [payload], fds)
        else:
            self.conn.send(payload)
        data = self.conn.recv(1024)
        if not data:
            raise ConnectionError("the proxy closed the ZDS connection")
        resp = self.pb.WorkloadResponse()
        resp.ParseFromString(data)
        assert resp.WhichOneof("payload") == "ack", resp
        return resp.ack.error

    def _request(self, **kw) -> bytes:
        return self.pb.WorkloadRequest(**kw).SerializeToString()

    def add(self, uid: str, name: str, namespace: str, sa: str, netns: str | int) -> str:
        """Hands over pod `uid` with its netns (a path, or an open descriptor); returns the
        ack's error text ("" = served)."""
        info = self.pb.WorkloadInfo(name=name, namespace=namespace, service_account=sa)
        msg = self._request(add=self.pb.AddWorkload(uid=uid, workload_info=info))
        if isinstance(netns, int):
            return self._ask(msg, [netns])
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return self._ask(msg, [fd])
        finally:
            os.close(fd)

    def keep(self, uid: str) -> str:
        return self._ask(self._request(keep=self.pb.KeepWorkload(uid=uid)))

    def delete(self, uid: str) -> str:
        return self._ask(self._request(**{"del": self.pb.DelWorkload(uid=uid)}))

    def snapshot_sent(self) -> str:
        return self._ask(self._request(snapshot_sent=self.pb.SnapshotSent()))

    def raw(self, payload: bytes, fds: list[int] | None = None) -> str:
        return self._ask(payload, fds)
