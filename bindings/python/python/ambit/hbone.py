"""HBONE tunnels as ordinary sockets: dial one (`connect`, `open_connection` for asyncio), or
listen and take the tunnels clients open (`serve`, `start_server` for asyncio).

    import ambit
    with ambit.hbone.serve(server_credentials) as listener:
        sock = ambit.hbone.connect(client_credentials, listener.address, server_id, "10.0.0.1:80")
"""

from __future__ import annotations

import asyncio as _asyncio
import os as _os
import socket as _socket
import threading as _threading
from collections.abc import Awaitable as _Awaitable
from collections.abc import Callable as _Callable
from collections.abc import Iterator as _Iterator
from types import TracebackType as _TracebackType

from ambit._native import AmbitError, Credentials, SpiffeId
from ambit._native import HboneListener as _HboneListener
from ambit._native import hbone_connect_fd as _hbone_connect_fd
from ambit._native import hbone_connect_udp_fd as _hbone_connect_udp_fd

__all__ = [
    "AsyncHboneServer",
    "HboneListener",
    "Listener",
    "UdpFlow",
    "connect",
    "connect_udp",
    "open_connection",
    "serve",
    "start_server",
]

_TunnelHandler = _Callable[[_asyncio.StreamReader, _asyncio.StreamWriter, SpiffeId, str], _Awaitable[None]]


class HboneListener:
    """An HBONE server (from `hbone.serve`): every CONNECT is accepted, and `accept()` hands the
    tunnels out as connected stream sockets. Iterating yields them until the listener is closed.
    Closing stops new tunnels; sockets already handed out keep working."""

    def __init__(self, native: _HboneListener) -> None:
        self._native = native

    @property
    def address(self) -> str:
        """The bound address as `ip:port`."""
        return self._native.address

    def accept(self, timeout: float | None = None) -> tuple[_socket.socket, SpiffeId, str]:
        """The next tunnel as `(socket, client SpiffeId, requested authority)`. Waits up to
        `timeout` seconds (None: forever) and raises TimeoutError after that; raises AmbitError
        when the listener is closed. Ctrl-C interrupts the wait."""
        got = self._native.accept(timeout)
        if got is None:
            raise AmbitError("the HBONE listener is closed")
        fd, peer, authority = got
        return _socket.socket(fileno=fd), peer, authority

    def __iter__(self) -> _Iterator[tuple[_socket.socket, SpiffeId, str]]:
        while True:
            got = self._native.accept(None)
            if got is None:
                return
            fd, peer, authority = got
            yield _socket.socket(fileno=fd), peer, authority

    def close(self) -> None:
        """Stops listening (idempotent)."""
        self._native.close()

    def __enter__(self) -> HboneListener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
    ) -> None:
        self.close()


class AsyncHboneServer:
    """An HBONE server for asyncio (from `hbone.start_server`): each tunnel is handed to the
    handler as `(reader, writer, client SpiffeId, authority)` in a task of its own. Use as an
    async context manager, or call `close()` and `await wait_closed()`. A handler that raises
    is reported to the event loop's exception handler."""

    def __init__(self, listener: HboneListener, handler: _TunnelHandler) -> None:
        self._listener = listener
        self._handler = handler
        self._closing = False
        self._tasks: set[_asyncio.Task[None]] = set()
        self._loop = _asyncio.get_running_loop()
        self._stopped = _asyncio.Event()
        # Accepts wait in a thread of the server's own (without the GIL), not in the default
        # executor, which they would hold for as long as the server runs.
        self._thread = _threading.Thread(target=self._accept_thread, name="ambit-hbone-accept", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """The bound address as `ip:port`."""
        return self._listener.address

    def _accept_thread(self) -> None:
        try:
            while True:
                got = self._listener._native.accept(None)
                if got is None:
                    return
                try:
                    self._loop.call_soon_threadsafe(self._start, got)
                except RuntimeError:  # the event loop is closed: nobody will serve it
                    _os.close(got[0])
                    self._listener.close()
                    return
        finally:
            try:
                self._loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:
                pass

    def _start(self, got: tuple[int, SpiffeId, str]) -> None:
        fd, peer, authority = got
        if self._closing:
            _os.close(fd)
            return
        sock = _socket.socket(fileno=fd)
        sock.setblocking(False)
        task = self._loop.create_task(self._serve(sock, peer, authority))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: _asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._loop.call_exception_handler(
                {"message": "HBONE tunnel handler failed", "exception": exc, "task": task}
            )

    async def _serve(self, sock: _socket.socket, peer: SpiffeId, authority: str) -> None:
        reader, writer = await _asyncio.open_connection(sock=sock)
        try:
            await self._handler(reader, writer, peer, authority)
        finally:
            writer.close()

    def close(self) -> None:
        """Stops accepting (idempotent); tunnels being handled continue."""
        self._closing = True
        self._listener.close()

    async def wait_closed(self) -> None:
        """Waits until no more tunnels are accepted and the handlers running have returned."""
        await self._stopped.wait()
        while self._tasks:
            await _asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def serve_forever(self) -> None:
        """Serves until the server is closed."""
        await self._stopped.wait()

    async def __aenter__(self) -> AsyncHboneServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


Listener = HboneListener


def serve(credentials: Credentials, address: str = "127.0.0.1:0") -> HboneListener:
    """Listens for HBONE on `address` (`ip:port`, port 0 = any) presenting `credentials`;
    clients must present a certificate from the same trust bundle. Use as a context manager
    and iterate (or call `accept()`) for `(socket, client SpiffeId, authority)`."""
    return HboneListener(_HboneListener(credentials, address))

async def start_server(
    handler: _TunnelHandler, credentials: Credentials, address: str = "127.0.0.1:0"
) -> AsyncHboneServer:
    """Like `serve`, for asyncio (as `asyncio.start_server`): every tunnel is handed to
    `await handler(reader, writer, client_id, authority)` in a task of its own; the writer
    is closed when the handler returns, and `writer.write_eof()` half-closes."""
    return AsyncHboneServer(HboneListener(_HboneListener(credentials, address)), handler)

def connect(
    credentials: Credentials,
    peer: str,
    expected_id: SpiffeId | str,
    authority: str,
    transport: str = "h2",
) -> _socket.socket:
    """Opens a tunnel to `authority` through the HBONE peer at `peer` (`ip:port`), presenting
    `credentials` and accepting only a peer with SPIFFE id `expected_id`. Returns a connected
    stream socket: `shutdown(SHUT_WR)` half-closes the tunnel, `close()` ends it.
    `transport="h3"` carries it over HTTP/3 (QUIC on the peer's UDP port), falling back to
    HTTP/2 when the peer does not answer QUIC.
    Raises TunnelError (with `.status` when the peer refused), TlsError, or ValueError for an
    unknown transport."""
    fd = _hbone_connect_fd(credentials, peer, expected_id, authority, transport)
    return _socket.socket(fileno=fd)


class UdpFlow:
    """A UDP flow through the mesh (from `hbone.connect_udp`): whole datagrams each way, sent
    as HTTP/3 datagrams or, over HTTP/2, as capsules on the tunnel's stream. Datagrams may be
    lost, as UDP's are; empty ones are not carried. `socket` is the underlying SOCK_SEQPACKET
    socket (one message per datagram), for selectors and event loops."""

    def __init__(self, sock: _socket.socket) -> None:
        self.socket = sock

    def send(self, datagram: bytes) -> None:
        """Sends one datagram (1 to 65,507 bytes)."""
        if not 0 < len(datagram) <= 65507:
            raise ValueError(f"a datagram is 1 to 65507 bytes, not {len(datagram)}")
        self.socket.send(datagram)

    def recv(self, timeout: float | None = None) -> bytes | None:
        """The next datagram, or None once the flow has ended. Waits up to `timeout` seconds
        (None: forever) and raises TimeoutError after that."""
        self.socket.settimeout(timeout)
        data = self.socket.recv(65536)
        return data or None

    def fileno(self) -> int:
        return self.socket.fileno()

    def close(self) -> None:
        """Ends the flow (idempotent)."""
        self.socket.close()

    def __enter__(self) -> UdpFlow:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: _TracebackType | None,
    ) -> None:
        self.close()


def connect_udp(
    credentials: Credentials,
    peer: str,
    expected_id: SpiffeId | str,
    target: str,
    transport: str = "h2",
) -> UdpFlow:
    """Opens a UDP flow (CONNECT-UDP, an ambit extension) to `target` (`ip:port`) through the
    HBONE peer at `peer`, as `connect` opens a tunnel; `transport="h3"` carries the datagrams
    as QUIC datagrams. Raises as `connect` does."""
    fd = _hbone_connect_udp_fd(credentials, peer, expected_id, target, transport)
    return UdpFlow(_socket.socket(fileno=fd))


async def open_connection(
    credentials: Credentials, peer: str, expected_id: SpiffeId | str, authority: str
) -> tuple[_asyncio.StreamReader, _asyncio.StreamWriter]:
    """Like `connect`, for asyncio: returns `(reader, writer)`. The dial runs in the default
    executor, so the event loop keeps running; `writer.write_eof()` half-closes."""
    loop = _asyncio.get_running_loop()
    sock = await loop.run_in_executor(None, connect, credentials, peer, expected_id, authority)
    sock.setblocking(False)
    return await _asyncio.open_connection(sock=sock)
