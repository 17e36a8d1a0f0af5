//! End-to-end bench harness: the same workloads over (a) direct TCP, (b) a TLS-only relay
//! (rustls, same provider, mutual TLS), (c) HBONE (client → HBONE server → upstream), over
//! HTTP/2 and over HTTP/3 (the same server, QUIC on its UDP port), (d) the
//! same HBONE tunnel opened through the C ABI (`ambit_hbone_dial`: the host reads and writes a
//! socketpair descriptor that ambit's runtime bridges to the tunnel) and (e) two node proxies,
//! in one run on loopback, so the ratios are comparable on a noisy machine.
//!
//! `cargo run --release -p ambit-benches --bin ambit-bench -- [--quick] [--json FILE]`
//!
//! The C ABI's cost on bulk data alone:
//! `cargo run --release -p ambit-benches --bin ambit-bench -- --throughput-only --path HBONE
//! --path "HBONE fd (C ABI)"`

use ambit_benches::proc::fd_limit;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_hbone::{
    Client, ClientSettings, ConnectRequest, Dial, Responder, Server, ServerSettings,
};
use ambit_identity::{CaSource, CertificateAuthority, SpiffeId, SystemClock, TrustDomain};
use ambit_node::{NodeConfig, NodeProxy};
use ambit_state::{State, Workload};
use ambit_test_util::socks5::{SocksTarget, socks5_connect};
use ambit_tls::{CredentialCell, Provider, ServerOptions, TlsContext};
use anyhow::{Context, Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Large, short-lived buffers (HTTP/2 frames, copy chunks) come and go at line rate; glibc
/// malloc serves them with mmap/munmap and page faults, mimalloc from reused pages.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod c_abi;
mod report;

use report::{print_table, to_json};

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
type Conn = Box<dyn Stream>;
type Dialer = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Conn>> + Send>> + Send + Sync>;

struct Opts {
    quick: bool,
    /// Tiny sizes: proves the harness works (used by its test), measures nothing useful.
    smoke: bool,
    json: Option<String>,
    /// Measure throughput only (for profiling).
    throughput_only: bool,
    /// Only these paths (by name), e.g. for profiling one of them.
    only: Vec<String>,
    /// Internal: measure idle-connection RSS for one path in this (fresh) process.
    idle_probe: Option<(String, usize)>,
}

#[derive(Default, Clone)]
struct Figures {
    throughput_gbps: f64,
    p50_us: f64,
    p99_us: f64,
    conns_per_sec: f64,
    rss_per_idle_kib: f64,
    idle_count: usize,
}

fn main() -> Result<()> {
    let mut opts = Opts {
        quick: false,
        smoke: false,
        only: Vec::new(),
        throughput_only: false,
        json: None,
        idle_probe: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--smoke" => opts.smoke = true,
            "--path" => opts.only.push(args.next().context("--path NAME")?),
            "--throughput-only" => opts.throughput_only = true,
            "--json" => opts.json = Some(args.next().context("--json needs a file")?),
            "--idle-probe" => {
                let path = args.next().context("--idle-probe PATH N")?;
                let n = args.next().context("--idle-probe PATH N")?.parse()?;
                opts.idle_probe = Some((path, n));
            }
            "-h" | "--help" => {
                println!(
                    "ambit-bench [--quick | --smoke] [--throughput-only] [--path \"direct TCP\"|\"TLS relay\"|HBONE|HBONE/HTTP3|\"HBONE fd (C ABI)\"|\"two nodes\"]... [--json FILE]"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    raise_fd_limit();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(opts))
}

async fn run(opts: Opts) -> Result<()> {
    if let Some((path, n)) = opts.idle_probe {
        let env = Env::new(91).await?;
        let path = Path::ALL
            .into_iter()
            .find(|p| p.name() == path)
            .context("unknown path")?;
        let (per, n) = idle_rss(&env, path, n).await?;
        println!("{per} {n}");
        return Ok(());
    }
    let (bulk, rounds, conns, idle) = if opts.smoke {
        (4 << 20, 50, 32, 200)
    } else if opts.quick {
        (128 << 20, 2_000, 500, 2_000)
    } else {
        (1 << 30, 20_000, 5_000, 10_000)
    };
    let local = IpAddr::from([127, 0, 0, 1]);
    let (sink, echo) = (
        spawn_upstream(Upstream::Sink, local).await?,
        spawn_upstream(Upstream::Echo, local).await?,
    );
    // Behind node B, the upstreams are a workload of their own.
    let (sink_b, echo_b) = (
        spawn_upstream(Upstream::Sink, server_ip(90)).await?,
        spawn_upstream(Upstream::Echo, server_ip(90)).await?,
    );
    let env = Env::new(90).await?;

    let mut rows: Vec<(&str, Figures)> = Vec::new();
    for path in Path::ALL {
        let name = path.name();
        let (sink, echo) = if path == Path::TwoNodes {
            (sink_b, echo_b)
        } else {
            (sink, echo)
        };
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            continue;
        }
        eprintln!("measuring {name}...");
        let mut f = Figures {
            throughput_gbps: throughput(path.dialer(&env, sink).await?, bulk).await?,
            ..Figures::default()
        };
        if !opts.throughput_only {
            let (p50, p99) = latency(path.dialer(&env, echo).await?, rounds).await?;
            f.p50_us = p50;
            f.p99_us = p99;
            f.conns_per_sec = new_conns(path.dialer(&env, echo).await?, conns).await?;
            let (per, n) = idle_probe(path, idle)?;
            f.rss_per_idle_kib = per;
            f.idle_count = n;
        }
        rows.push((name, f));
    }
    print_table(&rows, bulk);
    if let Some(path) = opts.json {
        std::fs::write(&path, to_json(&rows, bulk)).with_context(|| format!("writing {path}"))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

// === the three paths ===

struct Env {
    client_cell: Arc<CredentialCell>,
    /// The client's credentials as PEM (chain, key, bundle), for the C ABI path.
    client_pem: [String; 3],
    server_id: SpiffeId,
    server_config: Arc<rustls::ServerConfig>,
    client_config: Arc<rustls::ClientConfig>,
    hbone: Client,
    hbone_server: SocketAddr,
    /// Node A's SOCKS5 address, and both nodes (kept alive).
    socks: SocketAddr,
    net: u8,
    _nodes: (NodeProxy, NodeProxy),
}

impl Env {
    async fn new(net: u8) -> Result<Arc<Self>> {
        let ca = CertificateAuthority::new(TrustDomain::new("cluster.local")?)?;
        let tls = TlsContext::new(Provider::default());
        let server_id = SpiffeId::parse("spiffe://cluster.local/ns/bench/sa/server")?;
        let client_id = SpiffeId::parse("spiffe://cluster.local/ns/bench/sa/client")?;
        let ttl = Duration::from_secs(24 * 3600);
        let server_cell = tls.credential_cell(&ca.credentials(&server_id, ttl)?)?;
        let client_creds = ca.credentials(&client_id, ttl)?;
        let client_cell = tls.credential_cell(&client_creds)?;
        let client_pem = [
            client_creds.svid.chain_pem(),
            client_creds.svid.key_pem(),
            client_creds.bundle.to_pem(),
        ];
        let server_config = tls.server_config(&server_cell, &ServerOptions::default())?;
        let client_config = tls.client_config(&client_cell, [server_id.clone()])?;
        // The HBONE server does what a node proxy's inbound does: connect to the authority
        // and copy both ways.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let hbone_server = listener.local_addr()?;
        let server = Server::new(server_config.clone(), forward, ServerSettings::default());
        let udp = std::net::UdpSocket::bind(hbone_server)?;
        let quic = server.clone();
        tokio::spawn(async move { quic.serve_udp(udp).await });
        tokio::spawn(async move { server.serve(listener).await });
        let nodes = two_nodes(&ca, net).await?;
        let socks = nodes.0.bound().socks5.context("node A SOCKS5")?;
        Ok(Arc::new(Self {
            socks,
            net,
            _nodes: nodes,
            hbone: Client::new(tls, ClientSettings::default()),
            client_cell,
            client_pem,
            server_id,
            server_config,
            client_config,
            hbone_server,
        }))
    }
}

/// Node A (client workload) and node B (server workload), each on its own loopback address.
async fn two_nodes(ca: &CertificateAuthority, net: u8) -> Result<(NodeProxy, NodeProxy)> {
    let mut state = State::new();
    for (name, ip, node) in [
        ("client", client_ip(net), "node-a"),
        ("server", server_ip(net), "node-b"),
    ] {
        let mut w = Workload::new(name, name, "bench", vec![ip]);
        w.service_account = name.into();
        w.node = node.into();
        state.insert_workload(w).map_err(anyhow::Error::msg)?;
    }
    let source = Arc::new(CaSource::new(
        Arc::new(CertificateAuthority::from_files(&ca.to_files()?, None)?),
        Duration::from_secs(24 * 3600),
        Arc::new(SystemClock),
    ));
    let tls = TlsContext::new(Provider::default());
    let config = |node: &str, host: u8| {
        let mut c = NodeConfig::new(node);
        c.socks5 = Some(SocketAddr::from(([127, net, 0, host], 0)));
        c.metrics = None;
        c.readiness = None;
        c.admin = None;
        c
    };
    let a = NodeProxy::start(
        config("node-a", 1),
        state.clone(),
        source.clone(),
        tls.clone(),
    )
    .await?;
    let b = NodeProxy::start(config("node-b", 2), state, source, tls).await?;
    Ok((a, b))
}

async fn forward(req: ConnectRequest, responder: Responder) {
    let Some(target) = req
        .authority
        .ip()
        .map(|ip| SocketAddr::new(ip, req.authority.port()))
    else {
        return responder.reject(ambit_hbone::http::StatusCode::BAD_REQUEST);
    };
    if target.port() == 1 {
        // The idle-RSS probe: hold the tunnel, no upstream.
        if let Ok(mut t) = responder.accept(Default::default()) {
            let mut b = [0u8; 1];
            let _ = t.read(&mut b).await;
        }
        return;
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return responder.reject(ambit_hbone::http::StatusCode::SERVICE_UNAVAILABLE);
    };
    let _ = upstream.set_nodelay(true);
    if let Ok(t) = responder.accept(Default::default()) {
        let _ = ambit_hbone::copy_tunnel(t, upstream).await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Direct,
    TlsRelay,
    Hbone,
    /// HBONE over HTTP/3 (QUIC) to the same server.
    Hbone3,
    /// HBONE through the C ABI: `ambit_hbone_dial` hands back a socketpair descriptor that
    /// ambit's own runtime bridges to the tunnel; the bench reads and writes it as a C host
    /// would.
    HboneFd,
    /// client → node A (SOCKS5) → HBONE → node B → server: the whole node-proxy data path.
    TwoNodes,
}

/// The two-node path's workload addresses, in `127.<net>.0.0/16`: the main run uses net 90,
/// idle probes (separate processes, alive at the same time) net 91.
fn client_ip(net: u8) -> IpAddr {
    IpAddr::from([127, net, 1, 2])
}

fn server_ip(net: u8) -> IpAddr {
    IpAddr::from([127, net, 2, 2])
}

impl Path {
    const ALL: [Path; 6] = [
        Path::Direct,
        Path::TlsRelay,
        Path::Hbone,
        Path::Hbone3,
        Path::HboneFd,
        Path::TwoNodes,
    ];

    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct TCP",
            Path::TlsRelay => "TLS relay",
            Path::Hbone => "HBONE",
            Path::Hbone3 => "HBONE/HTTP3",
            Path::HboneFd => "HBONE fd (C ABI)",
            Path::TwoNodes => "two nodes",
        }
    }

    /// A way to open connections to `target` over this path.
    async fn dialer(self, env: &Env, target: SocketAddr) -> Result<Dialer> {
        Ok(match self {
            Path::Direct => Arc::new(move || {
                Box::pin(async move {
                    let s = TcpStream::connect(target).await?;
                    s.set_nodelay(true)?;
                    Ok(Box::new(s) as Conn)
                })
            }),
            Path::TlsRelay => {
                let relay = spawn_tls_relay(env.server_config.clone(), target).await?;
                let config = env.client_config.clone();
                Arc::new(move || {
                    let config = config.clone();
                    Box::pin(async move {
                        let tcp = TcpStream::connect(relay).await?;
                        tcp.set_nodelay(true)?;
                        let tls = tokio_rustls::TlsConnector::from(config)
                            .connect(ambit_tls::server_name(), tcp)
                            .await?;
                        Ok(Box::new(tls) as Conn)
                    })
                })
            }
            Path::TwoNodes => {
                let (proxy, from) = (env.socks, client_ip(env.net));
                Arc::new(move || {
                    Box::pin(async move {
                        Ok(Box::new(
                            socks5_connect(proxy, from, &SocksTarget::Addr(target))
                                .await
                                .map_err(|e| anyhow::anyhow!("SOCKS5: {e:?}"))?,
                        ) as Conn)
                    })
                })
            }
            Path::Hbone | Path::Hbone3 => {
                let client = env.hbone.clone();
                let mut dial = Dial::new(
                    env.client_cell.clone(),
                    env.hbone_server,
                    vec![env.server_id.clone()],
                    target.into(),
                );
                if self == Path::Hbone3 {
                    dial.transport = ambit_hbone::Transport::Http3;
                }
                let dial = Arc::new(dial);
                Arc::new(move || {
                    let client = client.clone();
                    let dial = dial.clone();
                    Box::pin(async move { Ok(Box::new(client.connect(&dial).await?) as Conn) })
                })
            }
            Path::HboneFd => {
                let host = Arc::new(c_abi::Host::new(&env.client_pem)?);
                let peer = env.hbone_server.to_string();
                let expected = env.server_id.to_string();
                Arc::new(move || {
                    let (host, peer, expected) = (host.clone(), peer.clone(), expected.clone());
                    Box::pin(async move {
                        // The dial blocks (as documented): keep it off the async workers.
                        let fd = tokio::task::spawn_blocking(move || {
                            host.dial(&peer, &expected, &target.to_string())
                        })
                        .await??;
                        Ok(Box::new(fd) as Conn)
                    })
                })
            }
        })
    }
}

async fn spawn_tls_relay(
    config: Arc<rustls::ServerConfig>,
    upstream: SocketAddr,
) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if upstream.port() == 1 {
                    let (mut r, _w) = tokio::io::split(tls);
                    let mut b = [0u8; 1];
                    let _ = r.read(&mut b).await;
                    return;
                }
                let Ok(up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = up.set_nodelay(true);
                let _ = ambit_hbone::copy_bidirectional(tls, up).await;
            });
        }
    });
    Ok(addr)
}

// === upstreams ===

#[derive(Clone, Copy)]
enum Upstream {
    /// Reads to EOF, then answers with the byte count (8 bytes, big-endian).
    Sink,
    /// Echoes.
    Echo,
}

async fn spawn_upstream(kind: Upstream, ip: IpAddr) -> Result<SocketAddr> {
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                match kind {
                    Upstream::Sink => {
                        let mut buf = vec![0u8; 256 * 1024];
                        let mut total = 0u64;
                        while let Ok(n) = r.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            total += n as u64;
                        }
                        let _ = w.write_all(&total.to_be_bytes()).await;
                        let _ = w.shutdown().await;
                    }
                    Upstream::Echo => {
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        let _ = w.shutdown().await;
                    }
                }
            });
        }
    });
    Ok(addr)
}

// === workloads ===

/// Single stream: send `bytes`, half-close, wait for the upstream's count. Gbit/s.
async fn throughput(dial: Dialer, bytes: u64) -> Result<f64> {
    let mut conn = dial().await?;
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        conn.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    conn.shutdown().await?;
    let mut count = [0u8; 8];
    conn.read_exact(&mut count).await?;
    let secs = start.elapsed().as_secs_f64();
    let got = u64::from_be_bytes(count);
    if got != bytes {
        bail!("upstream received {got} of {bytes} bytes");
    }
    Ok(bytes as f64 * 8.0 / secs / 1e9)
}

/// 1 KiB request, 1 KiB response, over one warm connection. (p50, p99) in µs.
async fn latency(dial: Dialer, rounds: usize) -> Result<(f64, f64)> {
    let mut conn = dial().await?;
    let msg = vec![7u8; 1024];
    let mut back = vec![0u8; 1024];
    for _ in 0..rounds / 10 {
        conn.write_all(&msg).await?;
        conn.read_exact(&mut back).await?;
    }
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        conn.write_all(&msg).await?;
        conn.read_exact(&mut back).await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    Ok((pick(0.50), pick(0.99)))
}

/// New connections (or tunnels) per second, 16 at a time, each doing one 1-byte echo.
async fn new_conns(dial: Dialer, total: usize) -> Result<f64> {
    let workers = 16;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let dial = dial.clone();
        let n = total / workers + usize::from(w < total % workers);
        tasks.spawn(async move {
            for _ in 0..n {
                let mut c = dial().await?;
                c.write_all(b"x").await?;
                let mut b = [0u8; 1];
                c.read_exact(&mut b).await?;
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Runs [`idle_rss`] in a fresh copy of this program, so memory freed by the other workloads
/// and kept by the allocator does not hide the cost of idle connections.
fn idle_probe(path: Path, want: usize) -> Result<(f64, usize)> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--idle-probe", path.name(), &want.to_string()])
        .output()?;
    if !out.status.success() {
        bail!(
            "idle probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let per = it.next().context("probe output")?.parse()?;
    let n = it.next().context("probe output")?.parse()?;
    Ok((per, n))
}

/// RSS growth per idle connection (both ends are in this process), KiB; and how many.
async fn idle_rss(env: &Env, path: Path, want: usize) -> Result<(f64, usize)> {
    let hold = SocketAddr::from(([127, 0, 0, 1], 1));
    // Direct TCP and the two-node path need a listener that holds connections.
    let holder_ip = if path == Path::TwoNodes {
        server_ip(env.net)
    } else {
        IpAddr::from([127, 0, 0, 1])
    };
    let holder = TcpListener::bind(SocketAddr::new(holder_ip, 0)).await?;
    let holder_addr = holder.local_addr()?;
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    let accept_task = tokio::spawn(async move {
        while let Ok((s, _)) = holder.accept().await {
            keep.lock().await.push(s);
        }
    });
    // Direct TCP and the TLS relay hold two sockets per connection in this process; HBONE
    // tunnels share pooled connections.
    // The two-node path holds four (client, node A, node B's upstream, server).
    let n = match path {
        Path::Hbone => want,
        // The host's end and the bridge's end of each socketpair.
        Path::HboneFd => want.min((fd_limit().saturating_sub(512) / 2).max(100)),
        Path::TwoNodes => want.min((fd_limit().saturating_sub(512) / 4).max(100)),
        _ => want.min((fd_limit().saturating_sub(512) / 2).max(100)),
    };
    let dial = match path {
        Path::Direct | Path::TwoNodes => path.dialer(env, holder_addr).await?,
        _ => path.dialer(env, hold).await?,
    };
    // Warm up allocator and pools so the first connection's fixed costs are not counted.
    let mut conns = Vec::with_capacity(n);
    for _ in 0..100.min(n) {
        conns.push(dial().await?);
    }
    let before = ambit_test_util::rss_kib();
    for _ in conns.len()..n {
        conns.push(dial().await?);
    }
    let after = ambit_test_util::rss_kib();
    let measured = n - 100.min(n);
    drop(conns);
    accept_task.abort();
    held.lock().await.clear();
    Ok((
        after.saturating_sub(before) as f64 / measured.max(1) as f64,
        n,
    ))
}

// === process helpers ===

/// Raises this process's open-file soft limit to its hard limit with `prlimit(1)` (no unsafe
/// code needed); idle-connection counts shrink to fit the limit otherwise.
fn raise_fd_limit() {
    let hard = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4))
                .map(str::to_owned)
        });
    if let Some(hard) = hard {
        let _ = std::process::Command::new("prlimit")
            .args(["--pid", &std::process::id().to_string()])
            .arg(format!("--nofile={hard}:{hard}"))
            .stderr(std::process::Stdio::null())
            .status();
    }
}
