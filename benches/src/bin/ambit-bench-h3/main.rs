//! HBONE over HTTP/3 against HBONE over HTTP/2, in one run, on one link: a cold tunnel (new
//! connection: handshake + CONNECT + 1-byte echo), a warm tunnel (pooled connection), one
//! tunnel's throughput, and 64-byte ping-pong latency; then CONNECT-UDP at fixed offered
//! rates of 1,000-byte datagrams (HTTP/3 datagrams against HTTP/2 capsules): datagrams/s
//! echoed and loss.
//!
//! `cargo run --release -p ambit-benches --bin ambit-bench-h3 -- [--quick] [--json FILE]`
//!
//! Across a delayed link (`benches/netns/delayline.py`, a userspace delay line between two
//! network namespaces, since this kernel has no netem), the server and the client run as two
//! processes sharing a CA directory:
//! `ambit-bench-h3 --serve 10.99.0.2:15008 --ca-dir D` (prints `ready`), then
//! `ambit-bench-h3 --connect 10.99.0.2:15008 --ca-dir D [--no-bulk]`.
//! That is where QUIC's one round trip to a tunnel, against TCP + TLS 1.3 + HTTP/2's two,
//! shows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_benches::report::median;
use ambit_hbone::{
    Client, ClientSettings, ConnectRequest, Dial, Responder, Server, ServerSettings, Transport,
};
use ambit_identity::{CertificateAuthority, SpiffeId, TrustDomain};
use ambit_tls::{CredentialCell, Provider, ServerOptions, TlsContext};
use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod udp;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Opts {
    quick: bool,
    /// Tiny sizes: proves the harness works (its test), measures nothing.
    smoke: bool,
    json: Option<String>,
    /// Serve (HBONE on TCP and UDP, and TCP and UDP echo apps on port 7 of the same IP)
    /// and wait.
    serve: Option<SocketAddr>,
    /// Measure against a server started with `--serve` at this address.
    connect: Option<SocketAddr>,
    /// The CA both sides issue from (written by `--serve`).
    ca_dir: Option<std::path::PathBuf>,
    /// Skip the bulk transfer (a userspace delay line cannot carry line rate).
    no_bulk: bool,
    /// The client sends without GSO batches (`ClientSettings::quic_segmentation_offload`).
    no_gso: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    /// A new connection to an open tunnel (`connect` returning).
    open_ms: f64,
    /// A new connection to the first byte echoed through it.
    cold_ms: f64,
    warm_us: f64,
    throughput_gbps: f64,
    p50_us: f64,
    p99_us: f64,
}

fn main() -> Result<()> {
    let mut opts = Opts {
        quick: false,
        smoke: false,
        json: None,
        serve: None,
        connect: None,
        ca_dir: None,
        no_bulk: false,
        no_gso: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--smoke" => opts.smoke = true,
            "--no-bulk" => opts.no_bulk = true,
            "--no-gso" => opts.no_gso = true,
            "--json" => opts.json = Some(args.next().context("--json FILE")?),
            "--serve" => opts.serve = Some(args.next().context("--serve ADDR")?.parse()?),
            "--connect" => opts.connect = Some(args.next().context("--connect ADDR")?.parse()?),
            "--ca-dir" => opts.ca_dir = Some(args.next().context("--ca-dir DIR")?.into()),
            other => bail!(
                "unknown argument {other}; usage: ambit-bench-h3 [--quick | --smoke] [--json FILE] \
                 [--serve ADDR | --connect ADDR] [--ca-dir DIR] [--no-bulk] [--no-gso]"
            ),
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(opts))
}

struct Env {
    tls: TlsContext,
    cell: Arc<CredentialCell>,
    server: SocketAddr,
    server_id: SpiffeId,
    echo: SocketAddr,
    gso: bool,
}

async fn run(opts: Opts) -> Result<()> {
    let ca = match (&opts.ca_dir, opts.connect) {
        (Some(dir), Some(_)) => {
            CertificateAuthority::from_files(&ambit_identity::CaFiles::read_dir(dir)?, None)?
        }
        (dir, _) => {
            let ca = CertificateAuthority::new(TrustDomain::new("cluster.local")?)?;
            if let Some(dir) = dir {
                std::fs::create_dir_all(dir)?;
                ca.to_files()?.write_dir(dir, true)?;
            }
            ca
        }
    };
    let tls = TlsContext::new(Provider::default());
    let server_id = SpiffeId::parse("spiffe://cluster.local/ns/bench/sa/server")?;
    let client_id = SpiffeId::parse("spiffe://cluster.local/ns/bench/sa/client")?;
    let ttl = Duration::from_secs(3600);
    let cell = tls.credential_cell(&ca.credentials(&client_id, ttl)?)?;
    let (server, echo) = match opts.connect {
        Some(addr) => (addr, SocketAddr::new(addr.ip(), 7)),
        None => {
            let at = opts.serve.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
            let server_cell = tls.credential_cell(&ca.credentials(&server_id, ttl)?)?;
            let listener = TcpListener::bind(at).await?;
            let addr = listener.local_addr()?;
            let udp = std::net::UdpSocket::bind(addr)?;
            let config = tls.server_config(&server_cell, &ServerOptions::default())?;
            let server = Server::new(config, forward, ServerSettings::default());
            let quic = server.clone();
            tokio::spawn(async move { quic.serve_udp(udp).await });
            tokio::spawn(async move { server.serve(listener).await });
            let echo_at = SocketAddr::new(addr.ip(), if opts.serve.is_some() { 7 } else { 0 });
            let echo = spawn_echo(echo_at).await?;
            udp::spawn_echo(echo).await?;
            (addr, echo)
        }
    };
    if opts.serve.is_some() {
        println!("ready {server}");
        return std::future::pending().await;
    }
    let env = Env {
        tls,
        cell,
        server,
        server_id,
        echo,
        gso: !opts.no_gso,
    };
    let (cold_n, warm_n, bulk, pings) = if opts.smoke {
        (2, 5, 1 << 20, 50)
    } else if opts.quick {
        (10, 200, 64 << 20, 2_000)
    } else {
        (40, 2_000, 512 << 20, 20_000)
    };
    let mut rows = Vec::new();
    for transport in [Transport::Http2, Transport::Http3] {
        let (open_ms, cold_ms) = cold(&env, transport, cold_n).await?;
        let f = Figures {
            open_ms,
            cold_ms,
            warm_us: warm(&env, transport, warm_n).await?,
            throughput_gbps: if opts.no_bulk {
                0.0
            } else {
                throughput(&env, transport, bulk).await?
            },
            ..latency(&env, transport, pings).await?
        };
        rows.push((transport, f));
    }
    let (rates, secs): (&[u64], f64) = if opts.smoke {
        (&[1_000], 0.2)
    } else if opts.quick {
        (&[10_000, 50_000], 1.0)
    } else {
        (&[10_000, 50_000, 100_000], 3.0)
    };
    let mut flows = Vec::new();
    for &rate in rates {
        for transport in [Transport::Http2, Transport::Http3] {
            flows.push(udp::offered(&env, transport, rate, secs).await?);
        }
    }
    println!("HBONE over HTTP/2 and HTTP/3 to {}", env.server);
    println!(
        "{:<10} {:>12} {:>14} {:>14} {:>12} {:>10} {:>10}",
        "transport", "cold open ms", "cold echo ms", "warm tunnel µs", "Gbit/s", "p50 µs", "p99 µs"
    );
    for (t, f) in &rows {
        println!(
            "{:<10} {:>12.2} {:>14.2} {:>14.1} {:>12.2} {:>10.1} {:>10.1}",
            t.as_str(),
            f.open_ms,
            f.cold_ms,
            f.warm_us,
            f.throughput_gbps,
            f.p50_us,
            f.p99_us
        );
    }
    let (h2, h3) = (rows[0].1, rows[1].1);
    let throughput = if h2.throughput_gbps > 0.0 {
        format!("{:.2}x", h3.throughput_gbps / h2.throughput_gbps)
    } else {
        "not measured".to_owned()
    };
    println!(
        "h3 / h2: cold open {:.2}x, cold echo {:.2}x (target <= 0.6 across a delay), throughput {throughput} (target >= 0.7 on loopback), p50 {:.2}x, p99 {:.2}x",
        h3.open_ms / h2.open_ms,
        h3.cold_ms / h2.cold_ms,
        h3.p50_us / h2.p50_us,
        h3.p99_us / h2.p99_us
    );
    println!(
        "CONNECT-UDP, {}-byte datagrams, {secs} s per offered rate",
        udp::SIZE
    );
    println!(
        "{:<10} {:>12} {:>12} {:>14} {:>8}",
        "transport", "offered/s", "sent/s", "echoed/s", "loss %"
    );
    for f in &flows {
        println!(
            "{:<10} {:>12} {:>12.0} {:>14.0} {:>8.2}",
            f.transport.as_str(),
            f.offered_per_s,
            f.sent_per_s,
            f.echoed_per_s,
            f.loss_pct
        );
    }
    if let Some(path) = opts.json {
        let row = |t: Transport, f: &Figures| {
            format!(
                "{{\"transport\": \"{}\", \"open_ms\": {:.3}, \"cold_ms\": {:.3}, \"warm_us\": {:.1}, \"throughput_gbps\": {:.3}, \"p50_us\": {:.1}, \"p99_us\": {:.1}}}",
                t.as_str(),
                f.open_ms,
                f.cold_ms,
                f.warm_us,
                f.throughput_gbps,
                f.p50_us,
                f.p99_us
            )
        };
        let body = rows
            .iter()
            .map(|(t, f)| row(*t, f))
            .collect::<Vec<_>>()
            .join(",\n    ");
        let udp = flows
            .iter()
            .map(|f| {
                format!(
                    "{{\"transport\": \"{}\", \"offered_per_s\": {}, \"sent_per_s\": {:.0}, \"echoed_per_s\": {:.0}, \"loss_pct\": {:.3}}}",
                    f.transport.as_str(),
                    f.offered_per_s,
                    f.sent_per_s,
                    f.echoed_per_s,
                    f.loss_pct
                )
            })
            .collect::<Vec<_>>()
            .join(",\n    ");
        std::fs::write(
            path,
            format!(
                "{{\n  \"server\": \"{}\",\n  \"rows\": [\n    {body}\n  ],\n  \"udp\": [\n    {udp}\n  ]\n}}\n",
                env.server
            ),
        )?;
    }
    Ok(())
}

impl Env {
    /// A new client, so each measurement starts without pooled connections.
    fn client(&self) -> Client {
        let mut settings = ClientSettings::default();
        settings.quic_segmentation_offload = self.gso;
        Client::new(self.tls.clone(), settings)
    }
}

fn dial(env: &Env, transport: Transport) -> Dial {
    let mut d = Dial::new(
        env.cell.clone(),
        env.server,
        vec![env.server_id.clone()],
        env.echo.into(),
    );
    d.transport = transport;
    d
}

/// Medians over new connections (a new client each time): to the tunnel open, and to the
/// first byte echoed through it.
async fn cold(env: &Env, transport: Transport, n: usize) -> Result<(f64, f64)> {
    let (mut open, mut echo) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let client = env.client();
        let start = Instant::now();
        let mut t = client.connect(&dial(env, transport)).await?;
        open.push(start.elapsed().as_secs_f64() * 1e3);
        ping(&mut t, &[7]).await?;
        echo.push(start.elapsed().as_secs_f64() * 1e3);
        check(&t, transport)?;
    }
    Ok((median(open), median(echo)))
}

/// Median time to a working tunnel on a pooled connection.
async fn warm(env: &Env, transport: Transport, n: usize) -> Result<f64> {
    let client = env.client();
    let d = dial(env, transport);
    drop(client.connect(&d).await?);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut t = client.connect(&d).await?;
        ping(&mut t, &[7]).await?;
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(times))
}

/// One tunnel, `bytes` sent and echoed back at once: Gbit/s of payload one way.
async fn throughput(env: &Env, transport: Transport, bytes: usize) -> Result<f64> {
    let client = env.client();
    let t = client.connect(&dial(env, transport)).await?;
    check(&t, transport)?;
    let (mut r, mut w) = tokio::io::split(t);
    let chunk = vec![0x5au8; 64 * 1024];
    let start = Instant::now();
    let (sent, got) = tokio::join!(
        async {
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                w.write_all(&chunk[..n]).await?;
                left -= n;
            }
            w.shutdown().await
        },
        async {
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0usize;
            loop {
                match r.read(&mut buf).await? {
                    0 => return Ok::<_, std::io::Error>(total),
                    n => total += n,
                }
            }
        }
    );
    sent?;
    let got = got?;
    if got != bytes {
        bail!("{transport}: echoed {got} of {bytes} bytes");
    }
    Ok(bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9)
}

/// 64-byte ping-pong over one tunnel: p50 and p99 round trip / 2.
async fn latency(env: &Env, transport: Transport, n: usize) -> Result<Figures> {
    let client = env.client();
    let mut t = client.connect(&dial(env, transport)).await?;
    let msg = [1u8; 64];
    for _ in 0..100 {
        ping(&mut t, &msg).await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        ping(&mut t, &msg).await?;
        times.push(start.elapsed().as_secs_f64() * 1e6 / 2.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(Figures {
        p50_us: times[times.len() / 2],
        p99_us: times[times.len() * 99 / 100],
        ..Figures::default()
    })
}

async fn ping(t: &mut ambit_hbone::Tunnel, msg: &[u8]) -> Result<()> {
    t.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    t.read_exact(&mut back).await?;
    Ok(())
}

fn check(t: &ambit_hbone::Tunnel, want: Transport) -> Result<()> {
    if t.info().transport != want {
        bail!("asked for {want}, got {}", t.info().transport);
    }
    Ok(())
}

/// What a node proxy's inbound does: connect to the authority and copy both ways (relay
/// datagrams, for a UDP flow).
async fn forward(req: ConnectRequest, responder: Responder) {
    if req.kind == ambit_hbone::ConnectKind::Udp {
        return udp::relay(req, responder).await;
    }
    let Some(ip) = req.authority.ip() else {
        return responder.reject(ambit_hbone::http::StatusCode::BAD_REQUEST);
    };
    let Ok(upstream) = TcpStream::connect(SocketAddr::new(ip, req.authority.port())).await else {
        return responder.reject(ambit_hbone::http::StatusCode::SERVICE_UNAVAILABLE);
    };
    let _ = upstream.set_nodelay(true);
    if let Ok(t) = responder.accept(Default::default()) {
        let _ = ambit_hbone::copy_tunnel(t, upstream).await;
    }
}

async fn spawn_echo(at: SocketAddr) -> Result<SocketAddr> {
    let l = TcpListener::bind(at).await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Ok(addr)
}
