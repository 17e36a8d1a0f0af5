//! Connection pooling: streams per connection, one dial for concurrent first uses, keys.

use std::sync::Arc;
use std::time::Duration;

use ambit_test_util::{EchoServer, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STEP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_tunnels_use_ten_connections() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let client = pki.client();
    let me = pki.cell(&pki.id("test", "client"));
    let dial = Arc::new(server.dial(me, 8080));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (client, dial) = (client.clone(), dial.clone());
        tasks.spawn(async move { client.connect(&dial).await });
    }
    let mut tunnels = Vec::with_capacity(1000);
    while let Some(t) = tokio::time::timeout(STEP, tasks.join_next())
        .await
        .expect("in time")
    {
        tunnels.push(t.expect("task").expect("tunnel"));
    }
    assert_eq!(tunnels.len(), 1000);
    // All 1000 are open at once: ceil(1000 / 100) connections, not one more.
    assert_eq!(client.stats().connections_opened, 10);
    assert_eq!(server.server.stats().connections_accepted, 10);
    assert_eq!(server.server.stats().streams_active, 1000);
    // Every one of them works.
    for (i, t) in tunnels.iter_mut().enumerate().step_by(97) {
        let msg = format!("tunnel {i}\n");
        t.write_all(msg.as_bytes()).await.expect("write");
        let mut back = vec![0u8; msg.len()];
        t.read_exact(&mut back).await.expect("read");
        assert_eq!(back, msg.as_bytes());
    }
    drop(tunnels);
    // Released slots are reused: a new tunnel opens no connection.
    let _again = client.connect(&dial).await.expect("tunnel");
    assert_eq!(client.stats().connections_opened, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_uses_of_a_key_dial_once() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let client = pki.client();
    let me = pki.cell(&pki.id("test", "client"));
    let dial = Arc::new(server.dial(me, 8080));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (client, dial) = (client.clone(), dial.clone());
        tasks.spawn(async move { client.connect(&dial).await.map(|_t| ()) });
    }
    while let Some(r) = tokio::time::timeout(STEP, tasks.join_next())
        .await
        .expect("in time")
    {
        r.expect("task").expect("tunnel");
    }
    assert_eq!(client.stats().connections_opened, 1);
    assert_eq!(server.server.stats().connections_accepted, 1);
}

#[tokio::test]
async fn different_identities_do_not_share_connections() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let client = pki.client();
    let a = server.dial(pki.cell(&pki.id("test", "a")), 1);
    let b = server.dial(pki.cell(&pki.id("test", "b")), 1);
    let _ta = client.connect(&a).await.expect("a");
    let _tb = client.connect(&b).await.expect("b");
    let _ta2 = client.connect(&a).await.expect("a again");
    assert_eq!(client.stats().connections_opened, 2);
    // A different expected identity set is another key too.
    let mut c = a.clone();
    c.expected_ids.push(pki.id("test", "other"));
    let _tc = client.connect(&c).await.expect("c");
    assert_eq!(client.stats().connections_opened, 3);
}

#[tokio::test]
async fn idle_connections_are_released() {
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let mut settings = ambit_hbone::ClientSettings::default();
    settings.idle_timeout = Duration::from_millis(200);
    let client = ambit_hbone::Client::new(pki.tls.clone(), settings);
    let dial = server.dial(pki.cell(&pki.id("test", "client")), 1);
    drop(client.connect(&dial).await.expect("tunnel"));
    assert_eq!(client.stats().connections_pooled, 1);
    // The server sees the connection close once the client releases it.
    let mut stats = server.server.stats();
    let released = tokio::time::timeout(STEP, async {
        while stats.connections_active != 0 || client.stats().connections_pooled != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stats = server.server.stats();
        }
    })
    .await;
    assert!(
        released.is_ok(),
        "idle connection never released: {stats:?}"
    );
    // And the next tunnel dials afresh.
    let _t = client.connect(&dial).await.expect("tunnel");
    assert_eq!(client.stats().connections_opened, 2);
}
