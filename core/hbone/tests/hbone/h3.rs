//! HBONE over HTTP/3 between ambit's client and server: the same tunnels as over HTTP/2.

use std::time::Duration;

use ambit_hbone::{Transport, http::StatusCode};
use ambit_test_util::{EchoServer, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_echo_is_byte_exact_for_every_size() {
    let pki = TestPki::new();
    let mut server = EchoServer::start_h3(&pki, "echo").await;
    crate::echo::echo_every_size(&pki, &mut server, Transport::Http3).await;
}

#[tokio::test]
async fn h3_refusals_carry_their_status_and_connections_are_pooled() {
    let pki = TestPki::new();
    let server = EchoServer::start_h3(&pki, "echo").await;
    let client = pki.client();
    for code in [401u16, 503, 400] {
        let mut dial = server.dial(pki.cell(&pki.id("test", "client")), code);
        dial.transport = Transport::Http3;
        let err = client.connect(&dial).await.expect_err("refused");
        assert_eq!(err.status(), StatusCode::from_u16(code).ok(), "{err}");
    }
    let stats = client.stats();
    assert_eq!(
        stats.connections_opened, 1,
        "one QUIC connection for all three"
    );
    assert_eq!(server.server.stats().streams_rejected, 3);
}

#[tokio::test]
async fn h3_to_a_peer_without_udp_falls_back_to_h2_and_remembers() {
    let pki = TestPki::new();
    // TCP only: nothing answers QUIC on the port.
    let server = EchoServer::start(&pki, "echo").await;
    let mut settings = ambit_hbone::ClientSettings::default();
    settings.quic_handshake_timeout = Duration::from_millis(300);
    let client = pki.client_with(settings);
    let mut dial = server.dial(pki.cell(&pki.id("test", "client")), 8080);
    dial.transport = Transport::Http3;
    let first = client.connect(&dial).await.expect("tunnel over HTTP/2");
    assert_eq!(first.info().transport, Transport::Http2);
    assert_eq!(client.stats().quic_handshake_failures, 1);
    let second = client.connect(&dial).await.expect("second tunnel");
    assert_eq!(second.info().transport, Transport::Http2);
    assert_eq!(
        client.stats().quic_handshake_failures,
        1,
        "the failed peer is remembered: no second QUIC attempt"
    );
}

#[tokio::test]
async fn h3_wrong_server_identity_is_refused_without_fallback() {
    let pki = TestPki::new();
    let server = EchoServer::start_h3(&pki, "echo").await;
    let mut dial = ambit_hbone::Dial::new(
        pki.cell(&pki.id("test", "client")),
        server.addr,
        vec![pki.id("test", "someone-else")],
        "127.0.0.1:8080".parse().expect("authority"),
    );
    dial.transport = Transport::Http3;
    let err = pki.client().connect(&dial).await.expect_err("refused");
    assert!(
        matches!(err, ambit_hbone::HboneError::Tls { .. }),
        "a TLS failure, not a fallback: {err}"
    );
    assert_eq!(server.server.stats().streams_accepted, 0);
}

#[tokio::test]
async fn a_tunnel_queue_also_serves_http3() {
    let pki = TestPki::new();
    let id = pki.id("test", "queue");
    let queue = ambit_hbone::TunnelQueue::bind(
        "127.0.0.1:0".parse().expect("addr"),
        pki.server_config(&id),
        4,
    )
    .await
    .expect("queue");
    let mut dial = ambit_hbone::Dial::new(
        pki.cell(&pki.id("test", "client")),
        queue.local_addr(),
        vec![id],
        "127.0.0.1:9".parse().expect("authority"),
    );
    dial.transport = Transport::Http3;
    let client = pki.client();
    let (tunnel, queued) = tokio::join!(client.connect(&dial), queue.accept(Some(STEP)));
    let mut tunnel = tunnel.expect("tunnel");
    assert_eq!(tunnel.info().transport, Transport::Http3);
    let queued = queued.expect("in time").expect("queued");
    let std_socket = queued.socket;
    std_socket.set_nonblocking(true).expect("nonblocking");
    let mut host = tokio::net::UnixStream::from_std(std_socket).expect("tokio");
    tunnel.write_all(b"over quic").await.expect("write");
    let mut got = [0u8; 9];
    host.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"over quic");
    assert_eq!(client.stats().quic_handshake_failures, 0);
}
