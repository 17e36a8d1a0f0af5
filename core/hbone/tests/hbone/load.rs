//! Load with integrity checks: 10,000 concurrent tunnels with random payloads, and certificate
//! rotation on both sides while tunnels keep opening.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ambit_hbone::{Server, ServerSettings};
use ambit_test_util::{EchoHandler, EchoServer, TestPki, payload};
use ambit_tls::ServerOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Barrier;

const STEP: Duration = Duration::from_secs(120);

/// FNV-1a: cheap, order-sensitive.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Sends `data` through a fresh tunnel and returns the checksum of what came back.
async fn echo_sum(t: &mut ambit_hbone::Tunnel, data: &[u8]) -> std::io::Result<(u64, usize)> {
    let (mut r, mut w) = tokio::io::split(t);
    let write = async {
        w.write_all(data).await?;
        w.shutdown().await
    };
    let read = async {
        let mut back = Vec::with_capacity(data.len());
        r.read_to_end(&mut back).await?;
        Ok::<_, std::io::Error>(back)
    };
    let (wrote, back) = tokio::join!(write, read);
    wrote?;
    let back = back?;
    Ok((fnv(&back), back.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_tunnels_lose_and_reorder_nothing() {
    const N: usize = 10_000;
    let pki = TestPki::new();
    let server = EchoServer::start(&pki, "echo").await;
    let client = pki.client();
    let me = pki.cell(&pki.id("test", "load"));
    let all_open = Arc::new(Barrier::new(N));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(N);
    for i in 0..N {
        let (client, dial) = (client.clone(), server.dial(me.clone(), 80));
        let (all_open, bytes) = (all_open.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            // 1..=8 KiB, different per tunnel.
            let data = payload(1024 + (i * 7919) % (7 * 1024), i as u64);
            let mut t = client.connect(&dial).await.map_err(|e| e.to_string())?;
            all_open.wait().await;
            let (sum, len) = echo_sum(&mut t, &data).await.map_err(|e| e.to_string())?;
            if (sum, len) != (fnv(&data), data.len()) {
                return Err(format!(
                    "tunnel {i}: {len} of {} bytes, checksum mismatch",
                    data.len()
                ));
            }
            bytes.fetch_add(len as u64, Ordering::Relaxed);
            Ok::<_, String>(())
        }));
    }
    let results = tokio::time::timeout(STEP, async {
        let mut out = Vec::with_capacity(N);
        for t in tasks {
            out.push(t.await.map_err(|e| e.to_string()).and_then(|r| r));
        }
        out
    })
    .await
    .expect("10,000 tunnels in time");
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    let stats = client.stats();
    eprintln!(
        "10,000 tunnels: {} MiB echoed over {} connections",
        bytes.load(Ordering::Relaxed) >> 20,
        stats.connections_opened
    );
    assert_eq!(stats.tunnels_opened, N as u64);
    assert!(
        stats.connections_opened >= (N / 100) as u64,
        "at most 100 streams per connection: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_both_certificates_under_load_fails_no_tunnel() {
    let pki = TestPki::new();
    let server_id = pki.id("test", "echo");
    let server_cell = pki.cell(&server_id);
    let config = pki
        .tls
        .server_config(&server_cell, &ServerOptions::default())
        .expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, _seen) = tokio::sync::mpsc::unbounded_channel();
    let echo = EchoHandler::new(tx);
    let server = Server::new(config, echo, ServerSettings::default());
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });

    let client = pki.client();
    let client_cell = pki.cell(&pki.id("test", "client"));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..16u64 {
        let (mut client, stop, done) = (client.clone(), stop.clone(), done.clone());
        let tls = pki.tls.clone();
        let dial = ambit_hbone::Dial::new(
            client_cell.clone(),
            addr,
            vec![server_id.clone()],
            std::net::SocketAddr::from(([127, 0, 0, 1], 80)).into(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let data = payload(4096, w * 1_000_000 + n);
                let r = async {
                    let mut t = client.connect(&dial).await.map_err(|e| e.to_string())?;
                    echo_sum(&mut t, &data).await.map_err(|e| e.to_string())
                }
                .await;
                match r {
                    Ok((sum, _)) if sum == fnv(&data) => {}
                    Ok(_) => return Err(format!("worker {w}: corrupted echo")),
                    Err(e) => return Err(format!("worker {w}, tunnel {n}: {e}")),
                }
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
                // A fresh client (a new handshake) every 10 tunnels, so rotations meet both
                // live connections and handshakes in progress.
                if n.is_multiple_of(10) {
                    client = ambit_hbone::Client::new(tls.clone(), Default::default());
                }
                if stop.load(Ordering::Relaxed) {
                    return Ok(n);
                }
            }
        }));
    }
    // Rotate each side 10 times while the workers run.
    for round in 0..10 {
        let before = done.load(Ordering::Relaxed);
        tokio::time::timeout(STEP, async {
            while done.load(Ordering::Relaxed) < before + 50 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no progress before rotation {round}"));
        server_cell
            .store(&pki.credentials(&server_id))
            .expect("rotate server");
        client_cell
            .store(&pki.credentials(&pki.id("test", "client")))
            .expect("rotate client");
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let n = tokio::time::timeout(STEP, w)
            .await
            .expect("worker stopped")
            .expect("worker task")
            .expect("no failed tunnel during rotation");
        total += n;
    }
    let stats = server.stats();
    eprintln!("rotation under load: {total} tunnels; server {stats:?}");
    assert!(
        stats.connections_accepted > 20,
        "handshakes happened during rotation"
    );
    assert_eq!(stats.handshake_failures, 0);
    // Every client is gone: their idle connections close within about a second.
    drop(client);
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.stats().connections_active > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "connections of dropped clients linger: {:?}",
            server.stats()
        )
    });
}
