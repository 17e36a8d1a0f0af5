//! `ambit-soak`: a long run of a whole mesh in one process, sampling memory and file
//! descriptors, to show that nothing grows. Two node proxies and a waypoint on 127.77.x.y; workers
//! open a new connection per round trip, half L4 (SOCKS5 → HBONE → echo app, checksummed) and
//! half L7 (SOCKS5 → waypoint → HTTP app). Every `--every` seconds it prints RSS, open fds, round
//! trips and failures; at the end it compares the middle and the last third of the samples and
//! exits 1 on growth, failures or corrupted echoes. Not part of CI (`scripts/soak` runs it).
//!
//! New connections are paced (`--rate`, default 400 per second): every one the client closes
//! first stays in TIME_WAIT for 60 s, and a client bound to one address has ~28,000 ephemeral
//! ports (Linux's default range) for one destination, so an unpaced run measures the kernel
//! running out of ports (stalls in `bind`, then EADDRINUSE), not the mesh.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ambit_benches::proc::open_fds;
use ambit_identity::{CaSource, CertificateAuthority, SystemClock, TrustDomain};
use ambit_node::{NodeConfig, NodeProxy};
use ambit_state::{GatewayAddress, Service, State, TunnelProtocol, Workload};
use ambit_test_util::socks5::{SocksTarget, socks5_connect};
use ambit_test_util::{payload, rss_kib};
use ambit_tls::{Provider, TlsContext};
use ambit_waypoint::{L7Config, Waypoint, WaypointConfig};
use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NET: u8 = 77;

fn ip(host: [u8; 2]) -> IpAddr {
    ambit_test_util::mesh::ip(NET, host)
}

fn main() -> Result<()> {
    let mut seconds = 600u64;
    let mut every = 10u64;
    let mut workers = 16usize;
    let mut rate = 400u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> Result<u64> {
            args.next()
                .with_context(|| format!("{what} needs a value"))?
                .parse()
                .with_context(|| format!("{what} takes a number"))
        };
        match a.as_str() {
            "--minutes" => seconds = num("--minutes")? * 60,
            "--seconds" => seconds = num("--seconds")?,
            "--every" => every = num("--every")?.max(1),
            "--workers" => workers = num("--workers")?.max(1) as usize,
            "--rate" => rate = num("--rate")?.max(1),
            other => bail!(
                "unknown argument {other:?} (--minutes N | --seconds N | --every S | --workers N | --rate PER_SECOND)"
            ),
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(
            Duration::from_secs(seconds),
            Duration::from_secs(every),
            workers,
            rate,
        ))
}

fn state() -> State {
    let mut s = State::new();
    let mk = |name: &str, node: &str, host: [u8; 2]| {
        let mut w = Workload::new(&format!("soak/{name}"), name, "soak", vec![ip(host)]);
        w.service_account = name.to_owned();
        w.node = node.to_owned();
        w.protocol = TunnelProtocol::Hbone;
        w
    };
    let _ = s.insert_workload(mk("client", "node-a", [1, 2]));
    let _ = s.insert_workload(mk("echo", "node-b", [2, 2]));
    let mut web = mk("web", "node-b", [2, 3]);
    web.services.insert(
        "soak/web.soak.svc.cluster.local".into(),
        [(80, 8080)].into_iter().collect(),
    );
    let _ = s.insert_workload(web);
    let _ = s.insert_workload(mk("waypoint", "none", [3, 2]));
    let mut svc = Service::new("web", "soak", "web.soak.svc.cluster.local");
    svc.vips = vec![(String::new(), ip([100, 1]))];
    svc.ports = BTreeMap::from([(80, 8080)]);
    svc.waypoint = Some(GatewayAddress::ip(ip([3, 2])));
    s.insert_service(svc);
    s
}

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: soak}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web, port: 80}]
"#;

async fn run(total: Duration, every: Duration, workers: usize, rate: u64) -> Result<()> {
    let ca = Arc::new(CertificateAuthority::new(TrustDomain::new(
        "cluster.local",
    )?)?);
    let source = Arc::new(CaSource::new(
        ca,
        Duration::from_secs(3600),
        Arc::new(SystemClock),
    ));
    let tls = TlsContext::new(Provider::default());
    let node = |name: &str, host: u8| {
        let mut c = NodeConfig::new(name);
        c.socks5 = Some(SocketAddr::new(ip([0, host]), 15080));
        c.metrics = None;
        c.readiness = None;
        c.admin = None;
        c
    };
    let _a = NodeProxy::start(node("node-a", 1), state(), source.clone(), tls.clone())
        .await
        .context("node-a")?;
    let _b = NodeProxy::start(node("node-b", 2), state(), source.clone(), tls.clone())
        .await
        .context("node-b")?;
    let id = TrustDomain::new("cluster.local")?.workload_id("soak", "waypoint")?;
    let mut wc = WaypointConfig::new("waypoint", "soak", id);
    wc.hbone = SocketAddr::new(ip([3, 2]), 15008);
    wc.metrics = None;
    wc.readiness = None;
    let (routes, _) = L7Config::from_yaml(ROUTES, "soak routes", "istio-system")?;
    let _wp = Waypoint::start(wc, state(), routes, source, tls)
        .await
        .context("waypoint")?;
    spawn_echo(SocketAddr::new(ip([2, 2]), 8080)).await?;
    spawn_web(SocketAddr::new(ip([2, 3]), 8080)).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let corrupt = Arc::new(AtomicU64::new(0));
    for w in 0..workers {
        let (stop, ok, failed, corrupt) =
            (stop.clone(), ok.clone(), failed.clone(), corrupt.clone());
        // Each worker opens one connection per period, the workers evenly staggered.
        let period = Duration::from_secs_f64(workers as f64 / rate as f64);
        let first = tokio::time::Instant::now() + period.mul_f64(w as f64 / workers as f64);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(first, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                let r = if w % 2 == 0 {
                    l4(w, n).await
                } else {
                    l7().await
                };
                match r {
                    Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(false) => corrupt.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    println!("{workers} workers, {rate} new connections per second");
    println!(
        "{:>6} {:>9} {:>6} {:>10} {:>7} {:>8}",
        "t(s)", "RSS(KiB)", "fds", "round trips", "failed", "corrupt"
    );
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < total {
        tokio::time::sleep(every).await;
        let s = (start.elapsed().as_secs(), rss_kib(), open_fds());
        println!(
            "{:>6} {:>9} {:>6} {:>10} {:>7} {:>8}",
            s.0,
            s.1,
            s.2,
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            corrupt.load(Ordering::Relaxed)
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    verdict(
        &samples,
        failed.load(Ordering::Relaxed),
        corrupt.load(Ordering::Relaxed),
    )
}

/// The middle third against the last third (the first third is warm-up): RSS may not grow by
/// more than 10% + 8 MiB, fds by more than 16.
fn verdict(samples: &[(u64, u64, usize)], failed: u64, corrupt: u64) -> Result<()> {
    if samples.len() < 3 {
        bail!("too few samples for a verdict; run longer than 3 x --every");
    }
    let third = samples.len() / 3;
    let median = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let mid_rss = median(&mut samples[third..2 * third].iter().map(|s| s.1).collect());
    let end_rss = median(&mut samples[2 * third..].iter().map(|s| s.1).collect());
    let mid_fds = median(
        &mut samples[third..2 * third]
            .iter()
            .map(|s| s.2 as u64)
            .collect(),
    );
    let end_fds = median(&mut samples[2 * third..].iter().map(|s| s.2 as u64).collect());
    println!(
        "RSS median {mid_rss} KiB -> {end_rss} KiB; fds {mid_fds} -> {end_fds}; {failed} failed, {corrupt} corrupted"
    );
    if end_rss > mid_rss + mid_rss / 10 + 8 * 1024 {
        bail!("RSS grew from {mid_rss} KiB to {end_rss} KiB");
    }
    if end_fds > mid_fds + 16 {
        bail!("open fds grew from {mid_fds} to {end_fds}");
    }
    if corrupt > 0 {
        bail!("{corrupt} echoes came back different");
    }
    if failed > 0 {
        bail!("{failed} round trips failed");
    }
    println!("no growth, no failures");
    Ok(())
}

async fn l4(w: usize, n: u64) -> Result<bool> {
    let proxy = SocketAddr::new(ip([0, 1]), 15080);
    let to = SocksTarget::Addr(SocketAddr::new(ip([2, 2]), 8080));
    let mut s = socks5_connect(proxy, ip([1, 2]), &to)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let data = payload(1024 + (n as usize * 131) % 15_000, w as u64 * 1_000_003 + n);
    let (mut r, mut wr) = s.split();
    let send = async {
        wr.write_all(&data).await?;
        wr.shutdown().await
    };
    let mut back = Vec::with_capacity(data.len());
    let (sent, got) = tokio::join!(send, r.read_to_end(&mut back));
    sent?;
    got?;
    Ok(back == data)
}

async fn l7() -> Result<bool> {
    let proxy = SocketAddr::new(ip([0, 1]), 15080);
    let to = SocksTarget::Addr(SocketAddr::new(ip([100, 1]), 80));
    let mut s = socks5_connect(proxy, ip([1, 2]), &to)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    s.write_all(b"GET /soak HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(out.starts_with(b"HTTP/1.1 200") && out.ends_with(b"soak ok\n"))
}

async fn spawn_echo(addr: SocketAddr) -> Result<()> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("echo app on {addr}"))?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Ok(())
}

async fn spawn_web(addr: SocketAddr) -> Result<()> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("web app on {addr}"))?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                // Keep-alive: answer each request head on this connection.
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let body = "soak ok\n";
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(())
}
