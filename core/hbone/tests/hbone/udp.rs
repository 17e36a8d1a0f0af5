//! UDP flows through HBONE (CONNECT-UDP) between ambit's client and server, over HTTP/3
//! (datagrams) and HTTP/2 (capsules).

use std::collections::BTreeSet;
use std::time::Duration;

use ambit_hbone::{Transport, http::StatusCode};
use ambit_test_util::{EchoServer, TestPki, payload};

const STEP: Duration = Duration::from_secs(30);

async fn echo_datagrams(transport: Transport) {
    let pki = TestPki::new();
    let mut server = EchoServer::start_h3(&pki, "echo").await;
    let client = pki.client();
    let mut dial = server.dial(pki.cell(&pki.id("test", "client")), 5353);
    dial.transport = transport;
    let mut flow = client.connect_udp(&dial).await.expect("flow");
    assert_eq!(flow.info().transport, transport);
    assert_eq!(flow.uses_datagrams(), transport == Transport::Http3);
    // Empty, small, a full QUIC packet's worth, and larger than any QUIC datagram (it goes
    // as a capsule on the stream even over HTTP/3).
    let sizes = [0usize, 1, 1100, 4000, 60_000];
    let sent: BTreeSet<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(n, i as u64 + 1))
        .collect();
    for d in &sent {
        flow.send(d).await.expect("send");
    }
    let mut back = BTreeSet::new();
    while back.len() < sent.len() {
        let d = tokio::time::timeout(STEP, flow.recv())
            .await
            .expect("echo in time")
            .expect("recv")
            .expect("flow still open");
        back.insert(d.to_vec());
    }
    assert_eq!(back, sent, "every datagram came back whole");
    let (mut tx, _rx) = flow.into_split();
    tx.close().await.expect("close");
    let seen = tokio::time::timeout(STEP, server.seen.recv())
        .await
        .expect("report in time")
        .expect("report");
    assert_eq!(seen.authority, "127.0.0.1:5353");
    assert_eq!(seen.read, Ok(sizes.iter().sum::<usize>() as u64));
}

#[tokio::test]
async fn udp_flow_over_http3_datagrams_echoes_every_datagram() {
    echo_datagrams(Transport::Http3).await;
}

#[tokio::test]
async fn udp_flow_over_http2_capsules_echoes_every_datagram() {
    echo_datagrams(Transport::Http2).await;
}

#[tokio::test]
async fn udp_flows_are_refused_like_tunnels_and_need_an_ip_target() {
    let pki = TestPki::new();
    let server = EchoServer::start_h3(&pki, "echo").await;
    let client = pki.client();
    for transport in [Transport::Http2, Transport::Http3] {
        let mut dial = server.dial(pki.cell(&pki.id("test", "client")), 401);
        dial.transport = transport;
        let err = client.connect_udp(&dial).await.expect_err("refused");
        assert_eq!(
            err.status(),
            Some(StatusCode::UNAUTHORIZED),
            "{transport}: {err}"
        );
        let mut named = dial.clone();
        named.authority = "dns.example:53".parse().expect("authority");
        let err = client
            .connect_udp(&named)
            .await
            .expect_err("no name targets");
        assert!(err.to_string().contains("IP address"), "{err}");
    }
}

#[tokio::test]
async fn oversized_datagrams_are_refused_before_sending() {
    let pki = TestPki::new();
    let server = EchoServer::start_h3(&pki, "echo").await;
    let mut dial = server.dial(pki.cell(&pki.id("test", "client")), 5353);
    dial.transport = Transport::Http3;
    let mut flow = pki.client().connect_udp(&dial).await.expect("flow");
    let err = flow
        .send(&vec![0u8; ambit_hbone::MAX_UDP_PAYLOAD + 1])
        .await
        .expect_err("too big");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    flow.send(b"still works").await.expect("send");
    let back = tokio::time::timeout(STEP, flow.recv())
        .await
        .expect("in time")
        .expect("recv");
    assert_eq!(back.as_deref(), Some(&b"still works"[..]));
}
