//! The DNS proxy's speed answering from the state: 2,000 services in 100 namespaces, the
//! proxy on one core (a single-threaded runtime), a UDP client keeping 32 queries in flight
//! for a mix of full names and short names (A and AAAA). Reports queries/s and the latency of
//! each query, plus the cost of one answer computed without I/O (`ambit_node::dns::answer`).
//!
//! `cargo run --release -p ambit-benches --bin ambit-bench-dns -- [--quick]`

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_identity::{CaSource, CertificateAuthority, SystemClock, TrustDomain};
use ambit_node::dns::{Answer, Asker, answer};
use ambit_node::{NodeConfig, NodeProxy};
use ambit_state::{Service, State};
use ambit_tls::{Provider, TlsContext};
use anyhow::{Context, Result};
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVICES: usize = 2_000;
const NAMESPACES: usize = 100;
const IN_FLIGHT: usize = 32;

fn state() -> State {
    let mut s = State::new();
    for i in 0..SERVICES {
        let ns = format!("ns-{}", i % NAMESPACES);
        let mut svc = Service::new(
            &format!("svc-{i}"),
            &ns,
            &format!("svc-{i}.{ns}.svc.cluster.local"),
        );
        svc.vips = vec![
            (
                String::new(),
                IpAddr::V4(Ipv4Addr::new(172, 20, (i >> 8) as u8, i as u8)),
            ),
            (String::new(), format!("fd20::{i:x}").parse().expect("v6")),
        ];
        s.insert_service(svc);
    }
    s
}

/// The names asked: the full name, and the short form a pod in the same namespace uses.
fn queries() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in (0..SERVICES).step_by(7) {
        let ns = format!("ns-{}", i % NAMESPACES);
        for (name, t) in [
            (format!("svc-{i}.{ns}.svc.cluster.local."), RecordType::A),
            (format!("svc-{i}.{ns}."), RecordType::AAAA),
        ] {
            let mut m = Message::query();
            m.metadata.recursion_desired = true;
            m.add_query(hickory_proto::op::Query::query(
                Name::from_ascii(&name).expect("name"),
                t,
            ));
            out.push(m.to_vec().expect("encode"));
        }
    }
    out
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 1.0 } else { 5.0 };
    let st = state();
    let wire = queries();

    // The answer alone.
    let asker = Asker::default();
    let msgs: Vec<Message> = wire
        .iter()
        .map(|b| Message::from_vec(b).expect("parse"))
        .collect();
    let n = if quick { 20_000 } else { 200_000 };
    let t = Instant::now();
    let mut local = 0usize;
    for i in 0..n {
        if let Answer::Local(m, _) = answer(&st, &asker, "cluster.local", &msgs[i % msgs.len()]) {
            local += m.answers.len();
        }
    }
    let per = t.elapsed().as_secs_f64() / n as f64;
    anyhow::ensure!(local > 0, "no answer computed");
    println!(
        "answer (no I/O): {:.2} µs per query, {:.0} /s",
        per * 1e6,
        1.0 / per
    );

    // The proxy on one core.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let ca = Arc::new(
                CertificateAuthority::new(TrustDomain::new("cluster.local").expect("td"))
                    .expect("ca"),
            );
            let creds = Arc::new(CaSource::new(
                ca,
                Duration::from_secs(86400),
                Arc::new(SystemClock),
            ));
            let mut config = NodeConfig::new("bench");
            config.socks5 = None;
            config.metrics = None;
            config.readiness = None;
            config.admin = None;
            config.dns = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            let node = NodeProxy::start(config, st, creds, TlsContext::new(Provider::default()))
                .await
                .expect("node proxy");
            let _ = tx.send(node.bound().dns);
            std::future::pending::<()>().await;
        });
    });
    let addr = rx.recv().context("proxy")?.context("dns bound")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (count, mut lat) = rt.block_on(async move {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        sock.connect(addr).await?;
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut sent: std::collections::HashMap<u16, Instant> = std::collections::HashMap::new();
        let mut lat = Vec::new();
        let mut next = 0usize;
        let mut id: u16 = 0;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            while sent.len() < IN_FLIGHT {
                let mut q = wire[next % wire.len()].clone();
                next += 1;
                id = id.wrapping_add(1);
                q[..2].copy_from_slice(&id.to_be_bytes());
                sent.insert(id, Instant::now());
                sock.send(&q).await?;
            }
            let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
                .await
                .context("the proxy stopped answering")??;
            anyhow::ensure!(n >= 12, "short answer");
            let rid = u16::from_be_bytes([buf[0], buf[1]]);
            if let Some(t) = sent.remove(&rid) {
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        Ok::<_, anyhow::Error>((lat.len(), lat))
    })?;
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "proxy on one core, {IN_FLIGHT} in flight: {:.0} queries/s, latency p50 {:.0} µs, p99 {:.0} µs ({count} queries)",
        count as f64 / secs,
        p(0.5),
        p(0.99)
    );
    Ok(())
}
