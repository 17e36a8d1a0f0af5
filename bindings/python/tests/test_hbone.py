"""HBONE from Python: a tunnel is an ordinary socket. The server is Python's own ssl + h2
(an independent HBONE implementation), so both ends are checked."""

import socket
import ssl
import tempfile
import threading

import h2.config
import h2.connection
import h2.events
import pytest

import ambit


def h2_echo_server(ca, server_creds, client_id):
    """A minimal HBONE server in Python: mTLS (client cert required), HTTP/2, one CONNECT,
    echo. Returns (address, thread, seen) where seen gets the authority and client SAN."""
    d = tempfile.mkdtemp()
    for name, text in [("cert", server_creds.chain_pem), ("key", server_creds.key_pem), ("ca", ca.root_pem)]:
        with open(f"{d}/{name}.pem", "w") as f:
            f.write(text)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(f"{d}/cert.pem", f"{d}/key.pem")
    ctx.load_verify_locations(f"{d}/ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    seen = {}

    def serve():
        try:
            raw, _ = lsock.accept()
        except OSError:
            return
        try:
            tls = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            seen["tls_error"] = str(e)
            raw.close()
            lsock.close()
            return
        seen["san"] = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
        done = False
        while not done:
            data = tls.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    headers = dict(ev.headers)
                    seen["authority"] = headers.get(b":authority", b"").decode()
                    conn.send_headers(ev.stream_id, [(":status", "200")])
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    conn.send_data(ev.stream_id, ev.data)
                elif isinstance(ev, h2.events.StreamEnded):
                    conn.end_stream(ev.stream_id)
                    done = True
            tls.sendall(conn.data_to_send())
        tls.close()
        lsock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return lsock.getsockname(), t, seen


def test_tunnel_is_a_socket_against_a_python_h2_server():
    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/py/sa/server")
    client = ca.issue("spiffe://cluster.local/ns/py/sa/client")
    (host, port), thread, seen = h2_echo_server(ca, server, client.id)
    s = ambit.hbone.connect(client, f"{host}:{port}", server.id, "10.1.2.3:8080")
    s.settimeout(10)
    payload = bytes(range(256)) * 256
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    back = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        back += chunk
    s.close()
    thread.join(10)
    assert back == payload
    assert seen["authority"] == "10.1.2.3:8080"
    assert seen["san"] == ["spiffe://cluster.local/ns/py/sa/client"]


def test_wrong_identity_and_unreachable_peer_raise():
    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/py/sa/server")
    client = ca.issue("spiffe://cluster.local/ns/py/sa/client")
    (host, port), _thread, _seen = h2_echo_server(ca, server, client.id)
    with pytest.raises(ambit.TunnelError, match="TLS handshake") as e:
        ambit.hbone.connect(client, f"{host}:{port}", "spiffe://cluster.local/ns/py/sa/other", "10.1.2.3:80")
    assert e.value.status is None
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead = free.getsockname()
    free.close()
    with pytest.raises(ambit.TunnelError, match="cannot connect"):
        ambit.hbone.connect(client, f"{dead[0]}:{dead[1]}", server.id, "10.1.2.3:80")


def test_asyncio_open_connection():
    import asyncio

    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/py/sa/server")
    client = ca.issue("spiffe://cluster.local/ns/py/sa/client")
    (host, port), thread, seen = h2_echo_server(ca, server, client.id)

    async def run():
        reader, writer = await ambit.hbone.open_connection(client, f"{host}:{port}", server.id, "10.9.9.9:1")
        writer.write(b"async hello")
        await writer.drain()
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await writer.wait_closed()
        return data

    assert asyncio.run(run()) == b"async hello"
    thread.join(10)
    assert seen["authority"] == "10.9.9.9:1"


def test_ctrl_c_interrupts_a_blocking_dial_promptly(default_sigint):
    import os
    import signal
    import time

    ca = ambit.CertificateAuthority()
    client = ca.issue("spiffe://cluster.local/ns/py/sa/client")
    # Accepts TCP and never speaks TLS: the dial would wait for its 10 s connect timeout.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    addr = "%s:%d" % silent.getsockname()
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ambit.hbone.connect(client, addr, "spiffe://cluster.local/ns/py/sa/server", "10.0.0.1:80")
    elapsed = time.monotonic() - start
    timer.join()
    silent.close()
    assert elapsed < 3, f"took {elapsed:.1f} s to honour Ctrl-C"


# --- ambit.hbone.serve: an HBONE listener whose tunnels are sockets ----------------------------


def send_half_close_read_all(s, payload):
    """Sends `payload` on tunnel socket `s`, half-closes, reads to EOF, closes; returns what
    came back."""
    s.settimeout(10)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    back = b""
    while chunk := s.recv(65536):
        back += chunk
    s.close()
    return back


def echo_until_eof(sock):
    with sock:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)


def test_serve_against_our_own_connect():
    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/py/sa/server")
    client = ca.issue("spiffe://cluster.local/ns/py/sa/client")
    with ambit.hbone.serve(server) as listener:
        assert listener.address.startswith("127.0.0.1:")
        seen = {}

        def serve_one():
            sock, peer, authority = listener.accept(timeout=10)
            seen.update(peer=peer, authority=authority)
            echo_until_eof(sock)

        t = threading.Thread(target=serve_one)
        t.start()
        s = ambit.hbone.connect(client, listener.address, server.id, "10.1.2.3:8080")
        payload = bytes(range(256)) * 1024
        back = send_half_close_read_all(s, payload)
        t.join(10)
    assert back == payload
    assert seen == {"peer": client.id, "authority": "10.1.2.3:8080"}


def h2_connect_client(ca, creds, address, authority, payload):
    """An independent HBONE client: Python's ssl (mTLS, ALPN h2) and the h2 library sending one
    CONNECT, the payload, END_STREAM, and reading until the server ends the stream."""
    d = tempfile.mkdtemp()
    for name, text in [("cert", creds.chain_pem), ("key", creds.key_pem), ("ca", ca.root_pem)]:
        with open(f"{d}/{name}.pem", "w") as f:
            f.write(text)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # SPIFFE ids are URI SANs; the chain is still verified.
    ctx.load_cert_chain(f"{d}/cert.pem", f"{d}/key.pem")
    ctx.load_verify_locations(f"{d}/ca.pem")
    ctx.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=10)
    tls = ctx.wrap_socket(raw)
    assert tls.selected_alpn_protocol() == "h2"
    server_san = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "CONNECT"), (":authority", authority)])
    tls.sendall(conn.data_to_send())
    status, back, sent = None, b"", False
    while True:
        data = tls.recv(65536)
        if not data:
            break
        ended = False
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = dict(ev.headers)[b":status"].decode()
                if status == "200" and not sent:
                    conn.send_data(sid, payload, end_stream=True)
                    sent = True
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                back += ev.data
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                ended = True
        tls.sendall(conn.data_to_send())
        if ended:
            break
    conn.close_connection()
    tls.sendall(conn.data_to_send())
    tls.close()
    return status, back, server_san


@pytest.mark.parametrize("transport", ["h2", "h3"])
def test_connect_over_either_transport_to_our_listener(transport):
    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/py/sa/server")
    client = ca.issue("spiffe://cluster.local/ns/py/sa/client")
    with ambit.hbone.serve(server) as listener:
        t = threading.Thread(target=lambda: echo_until_eof(listener.accept(timeout=10)[0]))
        t.start()
        s = ambit.hbone.connect(client, listener.address, server.id, "10.1.2.3:53",
                                transport=transport)
        back = send_half_close_read_all(s, b"x" * 100_000)
        t.join(10)
    assert back == b"x" * 100_000
    with pytest.raises(ValueError, match="transport"):
        ambit.hbone.connect(client, listener.address, server.id, "10.1.2.3:53", transport="h4")


def test_serve_against_a_python_h2_client():
    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/py/sa/server")
    client = ca.issue("spiffe://cluster.local/ns/py/sa/h2-client")
    with ambit.hbone.serve(server) as listener:
        got = []

        def serve():
            for sock, peer, authority in listener:
                got.append((peer, authority))
                echo_until_eof(sock)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        payload = b"hello from h2 " * 1000
        status, back, san = h2_connect_client(ca, client, listener.address, "10.7.7.7:9000", payload)
        listener.close()
        t.join(10)
    assert not t.is_alive(), "iteration ends when the listener closes"
    assert (status, back) == ("200", payload)
    assert san == ["spiffe://cluster.local/ns/py/sa/server"]
    assert got == [(client.id, "10.7.7.7:9000")]


def test_serve_timeouts_close_and_foreign_clients():
    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/py/sa/server")
    listener = ambit.hbone.serve(server)
    with pytest.raises(TimeoutError):
        listener.accept(timeout=0.1)
    stranger = ambit.CertificateAuthority().issue("spiffe://cluster.local/ns/py/sa/stranger")
    with pytest.raises(ambit.TunnelError):
        ambit.hbone.connect(stranger, listener.address, server.id, "10.0.0.1:80")
    with pytest.raises(TimeoutError):
        listener.accept(timeout=0.2)
    address = listener.address
    listener.close()
    listener.close()  # idempotent
    with pytest.raises(ambit.AmbitError, match="closed"):
        listener.accept(timeout=1)
    assert list(listener) == []
    client = ca.issue("spiffe://cluster.local/ns/py/sa/client")
    with pytest.raises(ambit.TunnelError):
        ambit.hbone.connect(client, address, server.id, "10.0.0.1:80")
    with pytest.raises(ValueError):
        ambit.hbone.serve(server, "nowhere")


def test_asyncio_server_and_clients():
    """hbone.start_server with 20 concurrent asyncio clients: each tunnel is served in its own
    task with the client's identity and authority, bytes echoed whole after half-close; after
    close, wait_closed waits for the handlers and new tunnels are refused."""
    import asyncio
    import os

    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/py/sa/server")
    clients = [ca.issue(f"spiffe://cluster.local/ns/py/sa/c{i}") for i in range(4)]
    release = asyncio.Event
    finished = []

    async def run():
        slow_done = release()
        slow_seen = release()

        async def handler(reader, writer, peer, authority):
            if authority == "10.0.0.99:80":  # held open until the server has been closed
                slow_seen.set()
                await slow_done.wait()
                writer.write(b"late")
                finished.append(authority)
                return
            data = await reader.read()
            writer.write(f"{peer}|{authority}|".encode() + data)
            writer.write_eof()
            await writer.drain()

        srv = await ambit.hbone.start_server(handler, server)
        payloads = [os.urandom(64 * 1024 + i) for i in range(20)]

        async def one(i):
            creds = clients[i % 4]
            reader, writer = await ambit.hbone.open_connection(creds, srv.address, server.id, f"10.0.0.{i}:80")
            writer.write(payloads[i])
            writer.write_eof()
            got = await asyncio.wait_for(reader.read(), 20)
            writer.close()
            return got, f"{creds.id}|10.0.0.{i}:80|".encode() + payloads[i]

        for got, want in await asyncio.gather(*(one(i) for i in range(20))):
            assert got == want

        reader, writer = await ambit.hbone.open_connection(clients[0], srv.address, server.id, "10.0.0.99:80")
        await asyncio.wait_for(slow_seen.wait(), 20)
        srv.close()
        closing = asyncio.ensure_future(srv.wait_closed())
        await asyncio.wait_for(srv.serve_forever(), 20)  # the accept loop has ended
        for _ in range(10):
            await asyncio.sleep(0)
        assert not closing.done(), "wait_closed returned while a handler was running"
        slow_done.set()
        await asyncio.wait_for(closing, 20)
        assert finished == ["10.0.0.99:80"]
        assert await asyncio.wait_for(reader.read(), 20) == b"late"
        writer.close()
        loop = asyncio.get_running_loop()
        with pytest.raises(ambit.TunnelError):
            await loop.run_in_executor(None, ambit.hbone.connect, clients[0], srv.address, server.id, "10.0.0.1:80")

    asyncio.run(asyncio.wait_for(run(), 60))


def test_asyncio_server_reports_failing_handlers_and_survives_cancellation():
    import asyncio

    ca = ambit.CertificateAuthority()
    server = ca.issue("spiffe://cluster.local/ns/py/sa/server")
    client = ca.issue("spiffe://cluster.local/ns/py/sa/client")

    async def run():
        reported = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))

        async def handler(reader, writer, peer, authority):
            raise ValueError(f"no service for {authority}")

        srv = await ambit.hbone.start_server(handler, server)
        # Cancelling a wait does not stop or break the server.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(srv.serve_forever(), 0.05)
        reader, writer = await ambit.hbone.open_connection(client, srv.address, server.id, "10.0.0.7:80")
        assert await asyncio.wait_for(reader.read(), 20) == b""  # closed after the failure
        writer.close()
        srv.close()
        await asyncio.wait_for(srv.wait_closed(), 20)
        assert [str(c.get("exception")) for c in reported] == ["no service for 10.0.0.7:80"]

    asyncio.run(asyncio.wait_for(run(), 60))


def test_ctrl_c_interrupts_a_blocking_accept_promptly(default_sigint):
    # A bounded wait, so a broken interrupt fails the test instead of hanging it.
    import os
    import signal
    import time

    ca = ambit.CertificateAuthority()
    with ambit.hbone.serve(ca.issue("spiffe://cluster.local/ns/py/sa/server")) as listener:
        timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            listener.accept(timeout=10)
        elapsed = time.monotonic() - start
        timer.join()
    assert elapsed < 3, f"took {elapsed:.1f} s to honour Ctrl-C"
