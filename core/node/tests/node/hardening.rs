//! The node proxy under attack and under faults: spoofed and looping CONNECT targets, config
//! reloads under load, and a node restart that clients ride through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ambit_hbone::http::StatusCode;
use ambit_hbone::{Client, ClientSettings, Dial};
use ambit_identity::{CaSource, CertificateAuthority, SystemClock, TrustDomain};
use ambit_node::{NodeConfig, NodeProxy};
use ambit_state::{State, TunnelProtocol, Workload};
use ambit_test_util::apps::tcp_echo;
use ambit_test_util::mesh::{bind_when_free, ip};
use ambit_test_util::socks5::{SocksTarget, socks5_connect};
use ambit_tls::{Provider, TlsContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const STEP: Duration = Duration::from_secs(30);

fn state(net: u8, generation: u32) -> State {
    let mut s = State::new();
    for (name, node, host) in [
        ("client", "node-a", [1, 2]),
        ("server", "node-b", [2, 2]),
        ("other", "node-b", [2, 3]),
    ] {
        let mut w = Workload::new(&format!("demo/{name}"), name, "demo", vec![ip(net, host)]);
        w.service_account = name.to_owned();
        w.node = node.to_owned();
        w.protocol = TunnelProtocol::Hbone;
        // Changes with every generation, so a reload is a real replacement.
        w.canonical_revision = format!("g{generation}");
        s.insert_workload(w).expect("workload");
    }
    s
}

struct Fixture {
    ca: Arc<CertificateAuthority>,
    source: Arc<CaSource>,
    tls: TlsContext,
}

impl Fixture {
    fn new() -> Self {
        let ca = Arc::new(
            CertificateAuthority::new(TrustDomain::new("cluster.local").expect("td")).expect("ca"),
        );
        let source = Arc::new(CaSource::new(
            ca.clone(),
            Duration::from_secs(3600),
            Arc::new(SystemClock),
        ));
        Self {
            ca,
            source,
            tls: TlsContext::new(Provider::default()),
        }
    }

    async fn node(&self, net: u8, name: &str, host: u8, st: State) -> NodeProxy {
        let mut c = NodeConfig::new(name);
        c.socks5 = Some(SocketAddr::new(ip(net, [0, host]), 15080));
        c.metrics = None;
        c.readiness = None;
        c.admin = None;
        NodeProxy::start(c, st, self.source.clone(), self.tls.clone())
            .await
            .expect("node proxy")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_and_looping_targets_are_refused() {
    let net = 51;
    let f = Fixture::new();
    let _b = f.node(net, "node-b", 2, state(net, 0)).await;
    tcp_echo(SocketAddr::new(ip(net, [2, 2]), 8080))
        .await
        .expect("echo app");
    tcp_echo(SocketAddr::new(ip(net, [2, 3]), 8080))
        .await
        .expect("echo app");
    let me =
        f.ca.credentials(
            &TrustDomain::new("cluster.local")
                .expect("td")
                .workload_id("demo", "client")
                .expect("id"),
            Duration::from_secs(3600),
        )
        .expect("creds");
    let cell = f.tls.credential_cell(&me).expect("cell");
    let server_id = TrustDomain::new("cluster.local")
        .expect("td")
        .workload_id("demo", "server")
        .expect("id");
    let client = Client::new(f.tls.clone(), ClientSettings::default());
    let server = ip(net, [2, 2]);
    let dial = |authority: SocketAddr| {
        Dial::new(
            cell.clone(),
            SocketAddr::new(server, 15008),
            vec![server_id.clone()],
            authority.into(),
        )
    };
    // The connection is to server's HBONE port, but the target is another workload (same
    // node) or another host: a confused-deputy attempt.
    for (target, want) in [
        (
            SocketAddr::new(ip(net, [2, 3]), 8080),
            StatusCode::BAD_REQUEST,
        ),
        (
            SocketAddr::new(ip(net, [9, 9]), 8080),
            StatusCode::BAD_REQUEST,
        ),
        (
            SocketAddr::new(server, 15001),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            SocketAddr::new(server, 15006),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            SocketAddr::new(server, 15008),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (
            SocketAddr::new(server, 15080),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ] {
        let err = tokio::time::timeout(STEP, client.connect(&dial(target)))
            .await
            .expect("answered in time")
            .expect_err("refused");
        assert_eq!(err.status(), Some(want), "{target}: {err}");
    }
    // The legitimate target still works on the same pooled connection.
    let mut t = client
        .connect(&dial(SocketAddr::new(server, 8080)))
        .await
        .expect("legitimate target");
    t.write_all(b"ok").await.expect("write");
    let mut b = [0u8; 2];
    t.read_exact(&mut b).await.expect("echo");
    assert_eq!(&b, b"ok");
    assert_eq!(client.stats().connections_opened, 1);
}

/// Runs `workers` loops of SOCKS5 → echo round trips until `stop`; returns (ok, failures).
fn load(
    net: u8,
    workers: usize,
    stop: Arc<AtomicBool>,
    retry: bool,
) -> Vec<tokio::task::JoinHandle<(u64, Vec<String>)>> {
    (0..workers)
        .map(|w| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let proxy = SocketAddr::new(ip(net, [0, 1]), 15080);
                let to = SocksTarget::Addr(SocketAddr::new(ip(net, [2, 2]), 8080));
                let (mut ok, mut failed) = (0u64, Vec::new());
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let msg = format!("worker {w} message {n}");
                    let attempt = async {
                        let mut s = socks5_connect(proxy, ip(net, [1, 2]), &to)
                            .await
                            .map_err(|e| format!("{e:?}"))?;
                        s.write_all(msg.as_bytes())
                            .await
                            .map_err(|e| e.to_string())?;
                        s.shutdown().await.map_err(|e| e.to_string())?;
                        let mut back = String::new();
                        s.read_to_string(&mut back)
                            .await
                            .map_err(|e| e.to_string())?;
                        if back == msg {
                            Ok(())
                        } else {
                            Err(format!("echo {back:?} for {msg:?}"))
                        }
                    };
                    match tokio::time::timeout(STEP, attempt).await {
                        Ok(Ok(())) => ok += 1,
                        Ok(Err(e)) => failed.push(e),
                        Err(_) => failed.push("timed out".into()),
                    }
                    if retry && !failed.is_empty() {
                        // A client that reconnects: note the failure and go on.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                (ok, failed)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_connection() {
    let net = 52;
    let f = Fixture::new();
    let a = f.node(net, "node-a", 1, state(net, 0)).await;
    let b = f.node(net, "node-b", 2, state(net, 0)).await;
    tcp_echo(SocketAddr::new(ip(net, [2, 2]), 8080))
        .await
        .expect("echo app");
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(net, 8, stop.clone(), false);
    let reloads = Arc::new(AtomicU64::new(0));
    for g in 1..=50 {
        a.update(state(net, g));
        b.update(state(net, g));
        reloads.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.expect("worker");
        ok += o;
        failed.extend(f);
    }
    eprintln!(
        "reloads under load: {} reloads, {ok} round trips",
        reloads.load(Ordering::Relaxed)
    );
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    assert!(ok > 50, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_ride_through_a_node_restart() {
    let net = 53;
    let f = Fixture::new();
    let _a = f.node(net, "node-a", 1, state(net, 0)).await;
    let b = f.node(net, "node-b", 2, state(net, 0)).await;
    tcp_echo(SocketAddr::new(ip(net, [2, 2]), 8080))
        .await
        .expect("echo app");
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(net, 4, stop.clone(), true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.shutdown(Duration::from_millis(100)).await;
    let b2 = f.node(net, "node-b", 2, state(net, 1)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failures) = (0, 0);
    for w in workers {
        let (o, f) = w.await.expect("worker");
        ok += o;
        failures += f.len();
    }
    eprintln!("restart: {ok} round trips, {failures} failed around the restart");
    // Fresh connections after the restart succeed.
    let proxy = SocketAddr::new(ip(net, [0, 1]), 15080);
    let to = SocksTarget::Addr(SocketAddr::new(ip(net, [2, 2]), 8080));
    for i in 0..20 {
        let mut s = socks5_connect(proxy, ip(net, [1, 2]), &to)
            .await
            .unwrap_or_else(|e| panic!("connection {i} after the restart: {e:?}"));
        s.write_all(b"again").await.expect("write");
        let mut back = [0u8; 5];
        s.read_exact(&mut back).await.expect("echo after restart");
        assert_eq!(&back, b"again");
    }
    drop(b2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstreams_and_apps_dying_mid_stream_end_promptly() {
    let net = 54;
    let f = Fixture::new();
    let a = f.node(net, "node-a", 1, state(net, 0)).await;
    let b = f.node(net, "node-b", 2, state(net, 0)).await;
    let proxy = a.bound().socks5.expect("socks5");
    // Nothing listens on server:9999: SOCKS5 "connection refused" (5), counted as CONNECT.
    let to = SocksTarget::Addr(SocketAddr::new(ip(net, [2, 2]), 9999));
    let r = tokio::time::timeout(STEP, socks5_connect(proxy, ip(net, [1, 2]), &to))
        .await
        .expect("answered in time");
    assert!(
        matches!(r, Err(ambit_test_util::socks5::SocksError::Refused(_))),
        "{r:?}"
    );
    assert!(
        b.metrics().contains("response_flags=\"CONNECT\""),
        "{}",
        b.metrics()
    );

    // An app that sends data and, once the client has seen some of it, dies with a reset in
    // the middle of the transfer.
    let app = TcpListener::bind(SocketAddr::new(ip(net, [2, 2]), 7000))
        .await
        .expect("bind");
    let (die_tx, die_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = app.accept().await {
            let (_, mut w) = s.split();
            let send = async {
                loop {
                    if w.write_all(&[7u8; 16 * 1024]).await.is_err() {
                        break;
                    }
                }
            };
            tokio::select! {
                _ = send => {}
                _ = die_rx => {}
            }
            let _ = s.set_zero_linger();
            drop(s);
        }
    });
    let to = SocksTarget::Addr(SocketAddr::new(ip(net, [2, 2]), 7000));
    let mut s = socks5_connect(proxy, ip(net, [1, 2]), &to)
        .await
        .expect("connected");
    let mut first = vec![0u8; 64 * 1024];
    s.read_exact(&mut first).await.expect("the first bytes");
    let _ = die_tx.send(());
    let mut got = Vec::new();
    let r = tokio::time::timeout(STEP, s.read_to_end(&mut got))
        .await
        .expect("the client learns of the end promptly");
    eprintln!(
        "app died mid-stream: client read {} more bytes, then {r:?}",
        got.len()
    );
    assert!(
        first.iter().chain(&got).all(|b| *b == 7),
        "no foreign bytes"
    );
    let e = r.expect_err("a reset, not a clean end: the stream was truncated");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    tokio::time::timeout(STEP, async {
        while b.open_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("node-b forgets the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_halfway_leaves_nothing_listening() {
    let net = 55;
    let f = Fixture::new();
    // Metrics (bound after the inbound HBONE and SOCKS5 listeners) is taken.
    let taken = TcpListener::bind(SocketAddr::new(ip(net, [0, 9]), 0))
        .await
        .expect("bind");
    let metrics = taken.local_addr().expect("addr");

    let mut c = NodeConfig::new("node-b");
    c.socks5 = Some(SocketAddr::new(ip(net, [0, 2]), 15080));
    c.metrics = Some(metrics);
    c.readiness = None;
    c.admin = None;
    let e = NodeProxy::start(c, state(net, 0), f.source.clone(), f.tls.clone())
        .await
        .expect_err("metrics address in use");
    assert!(e.to_string().contains("metrics"), "{e}");
    // The SOCKS5 port and the workloads' HBONE ports were bound before; they are free again.
    for a in [
        SocketAddr::new(ip(net, [0, 2]), 15080),
        SocketAddr::new(ip(net, [2, 2]), 15008),
        SocketAddr::new(ip(net, [2, 3]), 15008),
    ] {
        bind_when_free(a)
            .await
            .unwrap_or_else(|e| panic!("{a} still held: {e}"));
    }

    drop(taken);
}
