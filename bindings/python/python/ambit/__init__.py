"""ambit: an embeddable service-mesh data plane, wire-compatible with Istio's ambient mode.

Identity (SPIFFE ids, a built-in CA), Istio L4 authorization decisions, HBONE tunnels as
ordinary sockets, and node proxies you can start from a test.
"""

from __future__ import annotations

import asyncio as _asyncio
import socket as _socket

from ambit._native import (
    AmbitError,
    CertificateAuthority,
    ConfigError,
    Credentials,
    Decision,
    IdentityError,
    NodeProxy,
    Policy,
    SpiffeId,
    TlsError,
    TunnelError,
    __version__,
)
from ambit._native import hbone_connect_fd as _hbone_connect_fd

__all__ = [
    "AmbitError",
    "CertificateAuthority",
    "ConfigError",
    "Credentials",
    "Decision",
    "IdentityError",
    "NodeProxy",
    "Policy",
    "SpiffeId",
    "TlsError",
    "TunnelError",
    "__version__",
    "hbone",
]


class hbone:  # noqa: N801 - a namespace, used as `ambit.hbone.connect(...)`
    """HBONE tunnels as sockets."""

    @staticmethod
    def connect(credentials: Credentials, peer: str, expected_id: SpiffeId | str, authority: str) -> _socket.socket:
        """Opens a tunnel to `authority` through the HBONE peer at `peer` (`ip:port`), presenting
        `credentials` and accepting only a peer with SPIFFE id `expected_id`. Returns a connected
        stream socket: `shutdown(SHUT_WR)` half-closes the tunnel, `close()` ends it.
        Raises TunnelError (with `.status` when the peer refused) or TlsError."""
        fd = _hbone_connect_fd(credentials, peer, expected_id, authority)
        return _socket.socket(fileno=fd)

    @staticmethod
    async def open_connection(
        credentials: Credentials, peer: str, expected_id: SpiffeId | str, authority: str
    ) -> tuple[_asyncio.StreamReader, _asyncio.StreamWriter]:
        """Like `connect`, for asyncio: returns `(reader, writer)`. The dial runs in the default
        executor, so the event loop keeps running; `writer.write_eof()` half-closes."""
        loop = _asyncio.get_running_loop()
        sock = await loop.run_in_executor(None, hbone.connect, credentials, peer, expected_id, authority)
        sock.setblocking(False)
        return await _asyncio.open_connection(sock=sock)
