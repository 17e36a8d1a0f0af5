//! The HTTP/1.1 client, the behaviour check and the load: what one measurement does.

use super::*;

// === HTTP/1.1 client ===

/// One request's answer: status and which backend version served it (`x-version`).
struct Reply {
    status: u16,
    v2: bool,
}

/// A keep-alive HTTP/1.1 client on one connection, written for low overhead: the request is
/// serialized once, the response parsed in place.
struct Http1 {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Http1 {
    fn new(s: TcpStream) -> Self {
        Self {
            s,
            buf: Vec::with_capacity(8192),
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Reply> {
        self.s.write_all(request).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            ensure!(self.buf.len() < 64 * 1024, "response head over 64 KiB");
            self.buf.reserve(4096);
            if self.s.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed before a response");
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response head")?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .context("response status line")?;
        let (mut len, mut v2) = (None, false);
        for l in lines {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                len = Some(v.parse::<usize>().context("content-length")?);
            } else if k.eq_ignore_ascii_case("x-version") {
                v2 = v == "v2";
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                || (status == 200
                    && k.eq_ignore_ascii_case("connection")
                    && v.eq_ignore_ascii_case("close"))
            {
                bail!("unexpected response header {l:?} in:\n{head}");
            }
        }
        let total = head_end + len.context("response without content-length")?;
        while self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            if self.s.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed in a response body");
            }
        }
        ensure!(self.buf.len() == total, "bytes after the response");
        Ok(Reply { status, v2 })
    }
}

fn request(method: &str, path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nhost: reviews.demo.svc.cluster.local\r\n{extra}\
         content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A behaviour check: what, from which pod, the request, the status wanted and (when it
/// matters) whether v2 must serve it.
type Case = (&'static str, IpAddr, Vec<u8>, u16, Option<bool>);

/// Proves the waypoint under test enforces what it was configured with, before measuring.
async fn check_behaviour(mesh: &Mesh) -> Result<()> {
    let net = mesh.net;
    let cases: [Case; 5] = [
        (
            "POST /api/… is routed",
            client_ip(net, 0),
            request("POST", "/api/reviews/1", "", &REQUEST_BODY),
            200,
            None,
        ),
        (
            "x-feature: beta goes to v2",
            client_ip(net, 1),
            request("GET", "/api/reviews/1", "x-feature: beta\r\n", b""),
            200,
            Some(true),
        ),
        (
            "DELETE is not allowed",
            client_ip(net, 0),
            request("DELETE", "/api/reviews/1", "", b""),
            403,
            None,
        ),
        (
            "paths outside /api/ are not allowed",
            client_ip(net, 0),
            request("POST", "/admin", "", &REQUEST_BODY),
            403,
            None,
        ),
        (
            "another identity is not allowed",
            intruder_ip(net),
            request("POST", "/api/reviews/1", "", &REQUEST_BODY),
            403,
            None,
        ),
    ];
    for (what, from, req, status, v2) in cases {
        let r = tokio::time::timeout(Duration::from_secs(10), async {
            let mut c = Http1::new(mesh.connect(from).await?);
            c.exchange(&req).await
        })
        .await
        .with_context(|| format!("{what}: no answer in 10 s"))?
        .with_context(|| what.to_owned())?;
        ensure!(
            r.status == status,
            "{what}: status {}, want {status}",
            r.status
        );
        if let Some(v2) = v2 {
            ensure!(r.v2 == v2, "{what}: served by the wrong version");
        }
    }
    Ok(())
}

// === load and measurement ===

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

#[derive(Default)]
struct Load {
    ok: u64,
    errors: u64,
    v2: u64,
    latencies_us: Vec<u32>,
}

async fn client_loop(mut c: Http1, phase: Arc<AtomicU8>, req: Arc<[u8]>) -> Result<Load> {
    let mut load = Load::default();
    loop {
        let p = phase.load(Ordering::Relaxed);
        if p == STOP {
            return Ok(load);
        }
        let t = Instant::now();
        let r = c.exchange(&req).await?;
        let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        if phase.load(Ordering::Relaxed) == MEASURE && p == MEASURE {
            if r.status == 200 {
                load.ok += 1;
                load.v2 += u64::from(r.v2);
                load.latencies_us.push(us);
            } else {
                load.errors += 1;
            }
        }
    }
}

async fn measure(mesh: &Mesh, pid: u32, conc: usize, opts: &Opts) -> Result<Sample> {
    let idle = status_kib(pid, "VmRSS:")?;
    let req: Arc<[u8]> = request("POST", "/api/reviews/42", "", &REQUEST_BODY).into();
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let mut clients = JoinSet::new();
    for i in 0..conc {
        let pod = client_ip(mesh.net, (i % usize::from(opts.pods)) as u8);
        let c = Http1::new(mesh.connect(pod).await?);
        clients.spawn(client_loop(c, phase.clone(), req.clone()));
    }
    tokio::time::sleep(opts.warmup).await;
    let (cpu0, rest0) = (cpu_ticks(pid)?, cpu_ticks(std::process::id())?);
    let start = Instant::now();
    phase.store(MEASURE, Ordering::Relaxed);
    tokio::time::sleep(opts.measure).await;
    phase.store(STOP, Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let (cpu1, rest1) = (cpu_ticks(pid)?, cpu_ticks(std::process::id())?);
    let (rss, hwm) = (status_kib(pid, "VmRSS:")?, status_kib(pid, "VmHWM:")?);
    let mut all = Load::default();
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(r) = clients.join_next().await {
            let l = r.context("client task")??;
            all.ok += l.ok;
            all.errors += l.errors;
            all.v2 += l.v2;
            all.latencies_us.extend(l.latencies_us);
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    joined.context("clients did not finish in 30 s after the window")??;
    ensure!(all.ok > 0, "no request succeeded in the window");
    all.latencies_us.sort_unstable();
    let pick = |q: f64| {
        let i = ((all.latencies_us.len() - 1) as f64 * q) as usize;
        f64::from(all.latencies_us[i]) / 1000.0
    };
    let per_1k = |ticks: u64| ticks as f64 * 1000.0 / clk_tck() / all.ok as f64 * 1000.0;
    Ok(Sample {
        rps: all.ok as f64 / secs,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        cpu_ms_per_1k: per_1k(cpu1.saturating_sub(cpu0)),
        rest_cpu_ms_per_1k: per_1k(rest1.saturating_sub(rest0)),
        rss_mib: rss as f64 / 1024.0,
        hwm_mib: hwm as f64 / 1024.0,
        idle_rss_mib: idle as f64 / 1024.0,
        requests: all.ok,
        errors: all.errors,
        v2_share: all.v2 as f64 / all.ok as f64,
    })
}

// === the run ===

pub(super) async fn run_one(
    proxy: Proxy,
    conc: usize,
    net: u8,
    pki: &Pki,
    envoy: Option<&Path>,
    opts: &Opts,
) -> Result<Sample> {
    let mesh = Mesh::start(net, pki).await?;
    let mut wp = match proxy {
        Proxy::Ambit => spawn_ambit(pki, net)?,
        Proxy::Envoy => spawn_envoy(envoy.context("no Envoy binary")?, pki, net)?,
    };
    wp.ready(SocketAddr::new(waypoint_ip(net), 15008)).await?;
    check_behaviour(&mesh)
        .await
        .with_context(|| format!("{} misbehaves:\n{}", proxy.name(), wp.tail()))?;
    let s = match measure(&mesh, wp.pid(), conc, opts).await {
        Ok(s) => s,
        Err(e) => {
            let stats = match proxy {
                Proxy::Envoy => envoy_stats(&pki.dir, net).await,
                Proxy::Ambit => String::new(),
            };
            return Err(e.context(format!(
                "{} under load:\n{}\n{stats}",
                proxy.name(),
                wp.tail()
            )));
        }
    };
    drop(wp);
    drop(mesh);
    Ok(s)
}
