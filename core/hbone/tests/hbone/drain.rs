//! Graceful drain: GOAWAY, open streams may finish until the deadline, then everything closes.

use std::time::{Duration, Instant};

use ambit_test_util::{EchoServer, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(30);

#[tokio::test]
async fn drain_lets_open_tunnels_finish_and_refuses_new_ones() {
    let pki = TestPki::new();
    let mut server = EchoServer::start(&pki, "echo").await;
    let client = pki.client();
    let dial = server.dial(pki.cell(&pki.id("test", "client")), 80);
    let mut t = client.connect(&dial).await.expect("tunnel");
    t.write_all(b"before").await.expect("write");
    let mut b = [0u8; 6];
    t.read_exact(&mut b).await.expect("echo");

    let draining = {
        let server = server.server.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            server.drain(Duration::from_secs(20)).await;
            start.elapsed()
        })
    };
    // The open tunnel keeps working while the server drains...
    tokio::task::yield_now().await;
    t.write_all(b"during").await.expect("write during drain");
    t.read_exact(&mut b).await.expect("echo during drain");
    assert_eq!(&b, b"during");
    // ...new tunnels are refused (GOAWAY on the pooled connection, listener closed)...
    let refused = tokio::time::timeout(STEP, client.connect(&dial))
        .await
        .expect("in time");
    assert!(
        refused.is_err(),
        "a new tunnel was opened on a draining server"
    );
    // ...and once the last tunnel finishes, drain returns well before its deadline.
    t.shutdown().await.expect("half-close");
    let mut rest = Vec::new();
    t.read_to_end(&mut rest).await.expect("clean end");
    let took = tokio::time::timeout(STEP, draining)
        .await
        .expect("drained")
        .expect("task");
    assert!(
        took < Duration::from_secs(15),
        "drain waited {took:?} for nothing"
    );
    assert_eq!(server.server.stats().connections_active, 0);
    assert_eq!(server.seen.recv().await.expect("report").read, Ok(12));
}

#[tokio::test]
async fn drain_deadline_closes_tunnels_that_do_not_finish() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let client = pki.client();
    let dial = server.dial(pki.cell(&pki.id("test", "client")), 80);
    let mut t = client.connect(&dial).await.expect("tunnel");
    t.write_all(b"x").await.expect("write");
    let mut b = [0u8; 1];
    t.read_exact(&mut b).await.expect("echo");
    let start = Instant::now();
    tokio::time::timeout(STEP, server.server.drain(Duration::from_millis(300)))
        .await
        .expect("drain returned after its deadline");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.server.stats().connections_active, 0);
    // The client's tunnel is gone: its read ends promptly.
    let read = tokio::time::timeout(STEP, t.read(&mut b))
        .await
        .expect("read returned");
    assert!(!matches!(read, Ok(1)), "data after forced close: {read:?}");
}
