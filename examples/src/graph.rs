//! The live service graph's server: polls Istio's standard series from the proxies' own
//! `/metrics` endpoints or from a Prometheus server, builds [`ambit_telemetry::graph::Graph`]
//! over a sliding window, and serves a page (`/`) and its JSON (`/api/graph`). The page is
//! one hand-written file with no library and nothing fetched from elsewhere, so it works
//! offline and the binary carries all of it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ambit_telemetry::graph::{Graph, Sample, parse_exposition};
use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The page: SVG drawn by a small script from `/api/graph`, refreshed every two seconds.
const PAGE: &str = include_str!("graph.html");

/// The series the graph is drawn from (as Istio's dashboards and Kiali query them).
const SERIES: [&str; 7] = [
    "istio_requests_total",
    "istio_request_duration_milliseconds_bucket",
    "istio_tcp_connections_opened_total",
    "istio_tcp_connections_failed_total",
    "istio_tcp_sent_bytes_total",
    "istio_tcp_received_bytes_total",
    "ambit_waypoint_info",
];

/// Where the samples come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphSource {
    /// Proxies' `/metrics` URLs (`http://host:port/metrics`), scraped directly.
    Metrics(Vec<String>),
    /// A Prometheus server's base URL (`http://host:9090`), queried over its HTTP API.
    Prometheus(String),
}

/// How the graph is polled.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// Where the samples come from.
    pub source: GraphSource,
    /// How often to poll.
    pub interval: Duration,
    /// Rates cover about this long (the oldest snapshot kept).
    pub window: Duration,
}

/// What `/api/graph` answers: the graph, when it was built, and each source's last error.
#[derive(Debug, Default, serde::Serialize)]
struct View {
    graph: Graph,
    /// Seconds since the server started.
    updated_secs: f64,
    /// `(url, error)` for every source that failed in the last poll.
    errors: Vec<(String, String)>,
}

/// Serves the graph on `listener` until the returned task is dropped or aborted.
pub fn serve_graph(listener: TcpListener, options: GraphOptions) -> JoinHandle<()> {
    let view = Arc::new(Mutex::new(String::from("{}")));
    let poller = tokio::spawn(poll(options, view.clone()));
    let errors = ambit_proxy::accept_errors(&ambit_telemetry::Metrics::new());
    let route = Arc::new(move |path: String| {
        let view = view.clone();
        async move {
            match path.split('?').next().unwrap_or("") {
                "/" | "/index.html" => (200, "text/html; charset=utf-8", PAGE.to_owned()),
                "/api/graph" => (
                    200,
                    "application/json",
                    view.lock().map(|v| v.clone()).unwrap_or_default(),
                ),
                _ => (404, "text/plain", "not found\n".to_owned()),
            }
        }
    });
    let mut poller_task = ambit_proxy::Tasks::default();
    poller_task.push(poller);
    tokio::spawn(async move {
        // The poller stops with the server (Tasks aborts it when dropped).
        let _poller = poller_task;
        ambit_proxy::admin::serve(listener, "graph", errors, route).await;
    })
}

/// Polls forever, keeping snapshots for the window and the latest view as JSON.
async fn poll(options: GraphOptions, view: Arc<Mutex<String>>) {
    let started = Instant::now();
    let mut snapshots: VecDeque<(Instant, Vec<Sample>)> = VecDeque::new();
    let mut tick = tokio::time::interval(options.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (samples, errors) = collect(&options.source).await;
        let now = Instant::now();
        while snapshots.len() > 1
            && snapshots
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= options.window)
        {
            snapshots.pop_front();
        }
        let before = snapshots
            .front()
            .map(|(at, s)| (s.as_slice(), now.duration_since(*at).as_secs_f64()));
        let graph = Graph::build(&samples, before);
        let v = View {
            graph,
            updated_secs: started.elapsed().as_secs_f64(),
            errors,
        };
        let complete = v.errors.is_empty();
        if let (Ok(json), Ok(mut slot)) = (serde_json::to_string(&v), view.lock()) {
            *slot = json;
        }
        // A poll that missed a source would make that source's edges look new (their whole
        // history in one window) when it is back: only complete polls are kept for rates.
        if complete {
            snapshots.push_back((now, samples));
        }
    }
}

/// Every sample from `source`, and the sources that failed.
async fn collect(source: &GraphSource) -> (Vec<Sample>, Vec<(String, String)>) {
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    match source {
        GraphSource::Metrics(urls) => {
            for url in urls {
                match scrape(url).await {
                    Ok(s) => samples.extend(s),
                    Err(e) => errors.push((url.clone(), format!("{e:#}"))),
                }
            }
        }
        GraphSource::Prometheus(base) => match query_prometheus(base).await {
            Ok(s) => samples = s,
            Err(e) => errors.push((base.clone(), format!("{e:#}"))),
        },
    }
    (samples, errors)
}

/// The samples a proxy's `/metrics` serves.
pub async fn scrape(url: &str) -> Result<Vec<Sample>> {
    let body = get(url).await?;
    parse_exposition(&body).with_context(|| format!("reading {url}"))
}

/// The graph's series from Prometheus' instant-query API, as samples.
pub async fn query_prometheus(base: &str) -> Result<Vec<Sample>> {
    let query = format!("{{__name__=~\"{}\"}}", SERIES.join("|"));
    let url = format!(
        "{}/api/v1/query?query={}",
        base.trim_end_matches('/'),
        percent_encode(&query)
    );
    let body = get(&url).await?;
    let v: serde_json::Value =
        serde_json::from_str(&body).context("Prometheus answered no JSON")?;
    if v["status"] != "success" {
        bail!(
            "Prometheus: {}",
            v["error"].as_str().unwrap_or("query failed")
        );
    }
    let result = v["data"]["result"]
        .as_array()
        .context("Prometheus answered no vector")?;
    let mut out = Vec::with_capacity(result.len());
    for r in result {
        let Some(metric) = r["metric"].as_object() else {
            continue;
        };
        let value = r["value"][1].as_str().and_then(|s| s.parse::<f64>().ok());
        let Some(value) = value else { continue };
        let mut labels = std::collections::BTreeMap::new();
        let mut name = String::new();
        for (k, v) in metric {
            let v = v.as_str().unwrap_or("").to_owned();
            if k == "__name__" {
                name = v;
            } else {
                labels.insert(k.clone(), v);
            }
        }
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    Ok(out)
}

/// `s` with everything but unreserved characters percent-encoded (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The body of `GET url` (plain `http://` only) when the answer is 200.
async fn get(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let addr: SocketAddr = tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut raw = Vec::new();
        (&mut s)
            .take(MAX_RESPONSE + 1)
            .read_to_end(&mut raw)
            .await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .with_context(|| format!("{url}: timed out"))?
        .with_context(|| url.to_owned())?;
    if raw.len() as u64 > MAX_RESPONSE {
        bail!("{url}: the response is over {MAX_RESPONSE} bytes");
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("{url}: not an HTTP response"))?;
    let (head, body) = (String::from_utf8_lossy(&raw[..split]), &raw[split + 4..]);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("{url}: HTTP {status}");
    }
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body).with_context(|| format!("{url}: bad chunked body"))?
    } else {
        body.to_vec()
    };
    String::from_utf8(body).with_context(|| format!("{url}: the body is not UTF-8"))
}

/// The most a scrape or query answer may be (a proxy's /metrics is far smaller).
const MAX_RESPONSE: u64 = 64 << 20;

/// A chunked body's content.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..line]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        let rest = &body[line + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        body = rest.get(size.checked_add(2)?..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encodes_a_selector() {
        assert_eq!(
            percent_encode("{__name__=~\"a|b\"}"),
            "%7B__name__%3D~%22a%7Cb%22%7D"
        );
    }

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(dechunk(b"zz\r\n"), None);
        assert_eq!(dechunk(b"ffffffffffffffff\r\nx"), None);
    }
}
