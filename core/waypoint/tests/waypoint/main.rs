//! A waypoint between two node proxies on loopback: client → SOCKS5 (node A) → HBONE to the
//! waypoint → JWT, L7 policy, HTTPRoute → HBONE (waypoint identity) → node B → HTTP apps.
//! HTTP is spoken by hyper on the client side and by small hyper apps on the server side.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ambit_identity::{CaSource, CertificateAuthority, SystemClock, TrustDomain};
use ambit_node::NodeProxy;
use ambit_state::{GatewayAddress, State};
use ambit_test_util::TestPki;
use ambit_test_util::jwt::JwtSigner;
use ambit_test_util::mesh::{bind_when_free, ip, service, workload};
use ambit_test_util::nodes::{Listeners, two_nodes};
use ambit_test_util::socks5::{SocksTarget, socks5_connect};
use ambit_tls::{Provider, TlsContext};
use ambit_waypoint::{L7Config, Waypoint, WaypointConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod conformance;
mod jwt;
mod mirror;
mod upgrade;

const STEP: Duration = Duration::from_secs(30);

/// client (node A, 1.2); reviews-v1 (2.2), reviews-v2 (2.3), flaky (2.4) on node B; the
/// waypoint at 3.2; service `reviews` (VIP 100.1) uses the waypoint and has both versions as
/// endpoints; `reviews-v1`/`reviews-v2` (100.2/100.3) name each version; `flaky` (100.4).
fn state(net: u8) -> State {
    let mut s = State::new();
    s.insert_workload(workload(net, "client", "demo", "client", "node-a", [1, 2]))
        .expect("w");
    let backends = [
        ("reviews-v1", [2, 2], vec!["reviews", "reviews-v1"]),
        ("reviews-v2", [2, 3], vec!["reviews", "reviews-v2"]),
        ("flaky", [2, 4], vec!["flaky"]),
        ("silent", [2, 5], vec!["silent"]),
    ];
    for (name, host, svcs) in backends {
        let mut w = workload(net, name, "demo", "reviews", "node-b", host);
        if name == "reviews-v1" {
            // Pod-addressed traffic to v1 goes through the waypoint too.
            w.waypoint = Some(Box::new(GatewayAddress::ip(ip(net, [3, 2]))));
        }
        for svc in svcs {
            w.services.insert(
                format!("demo/{svc}.demo.svc.cluster.local"),
                [(80, 8080)].into_iter().collect(),
            );
        }
        s.insert_workload(w).expect("w");
    }
    s.insert_workload(workload(
        net,
        "waypoint",
        "demo",
        "waypoint",
        "none",
        [3, 2],
    ))
    .expect("w");
    let wp = GatewayAddress::ip(ip(net, [3, 2]));
    for (name, vip) in [
        ("reviews", [100, 1]),
        ("reviews-v1", [100, 2]),
        ("reviews-v2", [100, 3]),
        ("flaky", [100, 4]),
    ] {
        let mut svc = service(net, name, "demo", vip, &[(80, 8080)]);
        svc.waypoint = Some(wp.clone());
        s.insert_service(svc);
    }
    // A mirror target (no waypoint of its own), served by `mirror::silent_app`.
    s.insert_service(service(net, "silent", "demo", [100, 5], &[(80, 8080)]));
    s
}

/// The waypoint `demo/waypoint` on 3.2:15008, with its Istio identity and no admin listeners.
fn waypoint_config(net: u8) -> WaypointConfig {
    let id = TrustDomain::new("cluster.local")
        .expect("td")
        .workload_id("demo", "waypoint")
        .expect("id");
    let mut wc = WaypointConfig::new("waypoint", "demo", id);
    wc.hbone = SocketAddr::new(ip(net, [3, 2]), 15008);
    wc.metrics = None;
    wc.readiness = None;
    wc
}

struct Mesh {
    net: u8,
    a: NodeProxy,
    _b: NodeProxy,
    waypoint: Waypoint,
    flaky_hits: Arc<AtomicU32>,
}

impl Mesh {
    async fn start(net: u8, l7_yaml: &str) -> Self {
        Self::start_with(net, l7_yaml, |_| {}).await
    }

    /// [`Mesh::start`] with the waypoint's config changed by `configure`.
    async fn start_with(
        net: u8,
        l7_yaml: &str,
        configure: impl FnOnce(&mut WaypointConfig),
    ) -> Self {
        let pki = TestPki::new();
        let (source, tls) = (pki.source(), pki.tls.clone());
        let st = state(net);
        let (a, b) = two_nodes(net, st.clone(), &pki, Listeners::Socks5)
            .await
            .expect("nodes");
        for (name, host) in [("reviews-v1", [2, 2]), ("reviews-v2", [2, 3])] {
            app(SocketAddr::new(ip(net, host), 8080), name, None).await;
        }
        let flaky_hits = Arc::new(AtomicU32::new(0));
        app(
            SocketAddr::new(ip(net, [2, 4]), 8080),
            "flaky",
            Some(flaky_hits.clone()),
        )
        .await;
        let mut wc = waypoint_config(net);
        configure(&mut wc);
        let (l7, warnings) = L7Config::from_yaml(l7_yaml, "test.yaml", "istio-system").expect("l7");
        assert!(warnings.is_empty(), "{warnings:?}");
        let waypoint = Waypoint::start(wc, st, l7, source, tls)
            .await
            .expect("waypoint");
        Self {
            net,
            a,
            _b: b,
            waypoint,
            flaky_hits,
        }
    }

    /// One HTTP/1.1 request from the client workload to `service` port 80 through the mesh.
    async fn request(
        &self,
        service_vip: [u8; 2],
        req: Request<Full<Bytes>>,
    ) -> (u16, String, http::HeaderMap) {
        let proxy = self.a.bound().socks5.expect("socks5");
        let to = SocketAddr::new(ip(self.net, service_vip), 80);
        let s = socks5_connect(proxy, ip(self.net, [1, 2]), &SocksTarget::Addr(to))
            .await
            .expect("socks5 to the service");
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .expect("http1 handshake");
        tokio::spawn(conn);
        let resp = tokio::time::timeout(STEP, send.send_request(req))
            .await
            .expect("response in time")
            .expect("response");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned(), headers)
    }

    /// HTTP/1.1 GET to `host:port` (a pod address) through node A.
    async fn get_pod(&self, host: [u8; 2], port: u16, path: &str) -> (u16, String) {
        let proxy = self.a.bound().socks5.expect("socks5");
        let to = SocketAddr::new(ip(self.net, host), port);
        let s = socks5_connect(proxy, ip(self.net, [1, 2]), &SocksTarget::Addr(to))
            .await
            .expect("socks5 to the pod");
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .expect("http1 handshake");
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "pod")
            .body(Full::new(Bytes::new()))
            .expect("req");
        let resp = tokio::time::timeout(STEP, send.send_request(req))
            .await
            .expect("in time")
            .expect("response");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&self, vip: [u8; 2], path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut b = Request::get(path).header("host", "reviews.demo.svc.cluster.local");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (s, body, _) = self
            .request(vip, b.body(Full::new(Bytes::new())).expect("req"))
            .await;
        (s, body)
    }
}

/// An HTTP/1.1 app answering `app=<name> path=<path> <selected headers>`; with `hits` (the
/// flaky app), `/fail` is always 503, `/slow` sleeps 5 s, and other paths alternate 503, 200.
async fn app(addr: SocketAddr, name: &'static str, hits: Option<Arc<AtomicU32>>) {
    let l = TcpListener::bind(addr).await.expect("bind app");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let hits = hits.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |r: Request<hyper::body::Incoming>| {
                    let hits = hits.clone();
                    async move {
                        if let Some(mut proto) = r.headers().get("upgrade").cloned() {
                            if r.uri().path() == "/ws-other-protocol" {
                                // Switches, but to something else than was asked for.
                                proto = http::HeaderValue::from_static("h2c");
                            }
                            return Ok::<_, Infallible>(echo_upgrade(r, proto, name));
                        }
                        let path = r.uri().to_string();
                        if path == "/rogue-101" {
                            // Switches protocols although nobody asked.
                            let mut resp = Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                            return Ok(resp);
                        }
                        let mut status = 200;
                        if let Some(h) = &hits {
                            match path.as_str() {
                                "/slow" => tokio::time::sleep(Duration::from_secs(5)).await,
                                "/fail" => status = 503,
                                _ if h.fetch_add(1, Ordering::SeqCst) % 2 == 0 => status = 503,
                                _ => {}
                            }
                        }
                        let seen = |k: &str| {
                            r.headers()
                                .get(k)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        let body = format!(
                            "app={name} path={path} host={} auth={} x-added={} traceparent={}",
                            seen("host"),
                            seen("authorization"),
                            seen("x-added"),
                            seen("traceparent")
                        );
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
}

/// Switches to `proto` and echoes every byte; when the client half-closes, writes
/// `app=<name> done` and closes.
fn echo_upgrade(
    mut r: Request<hyper::body::Incoming>,
    proto: http::HeaderValue,
    name: &'static str,
) -> Response<Full<Bytes>> {
    let on = hyper::upgrade::on(&mut r);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut io = TokioIo::new(up);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = io.write_all(format!("app={name} done").as_bytes()).await;
        let _ = io.shutdown().await;
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut().insert("upgrade", proto);
    resp.headers_mut()
        .insert("connection", http::HeaderValue::from_static("upgrade"));
    resp
}

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 80}]
  rules:
  - matches: [{headers: [{name: x-feature, value: beta}]}]
    backendRefs: [{name: reviews-v2, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-added, value: yes}]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-served-by, value: waypoint}]}
    backendRefs: [{name: reviews-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs:
    - {name: reviews-v1, port: 80, weight: 90}
    - {name: reviews-v2, port: 80, weight: 10}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: flaky, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: flaky}]
  rules:
  - matches: [{path: {type: Exact, value: /slow}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: flaky, port: 80}]
  - matches: [{path: {type: Exact, value: /fail}}]
    backendRefs: [{name: flaky, port: 80}]
  - matches: [{path: {type: Exact, value: /retry}}]
    retry: {codes: [503], attempts: 2}
    backendRefs: [{name: flaky, port: 80}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_header_prefix_and_weight_with_filters_and_redirects() {
    let mesh = Mesh::start(41, ROUTES).await;
    let (s, body) = mesh
        .get([100, 1], "/anything", &[("x-feature", "beta")])
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.starts_with("app=reviews-v2 path=/anything"), "{body}");
    assert!(
        body.contains("host=reviews.demo.svc.cluster.local"),
        "Host reaches the app unchanged: {body}"
    );
    assert!(
        !body.contains("traceparent=-"),
        "a trace context is added: {body}"
    );

    let mut b = Request::get("/v1/items").header("host", "reviews");
    b = b.header("x-added", "no");
    let (s, body, headers) = mesh
        .request([100, 1], b.body(Full::new(Bytes::new())).expect("req"))
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.starts_with("app=reviews-v1 path=/v1/items"), "{body}");
    assert!(
        body.contains("x-added=no"),
        "add keeps the first value: {body}"
    );
    assert_eq!(
        headers.get("x-served-by").and_then(|v| v.to_str().ok()),
        Some("waypoint")
    );

    let (s, _, headers) = mesh
        .request(
            [100, 1],
            Request::get("/old/page?q=1")
                .header("host", "reviews.demo")
                .body(Full::new(Bytes::new()))
                .expect("req"),
        )
        .await;
    assert_eq!(s, 301);
    let loc = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(loc.ends_with("/new/page?q=1"), "{loc}");

    let mut v2 = 0;
    for _ in 0..60 {
        let (s, body) = mesh.get([100, 1], "/", &[]).await;
        assert_eq!(s, 200, "{body}");
        if body.starts_with("app=reviews-v2") {
            v2 += 1;
        }
    }
    // 10% of 60: P(0 hits) = 0.9^60 ≈ 0.2%, P(≥ 20) < 1e-5.
    assert!((1..20).contains(&v2), "{v2} of 60 went to v2");

    let metrics = mesh.waypoint.metrics();
    assert!(
        metrics.contains("istio_requests_total{reporter=\"waypoint\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("destination_workload=\"reviews-v2\"")
            && metrics.contains("source_principal=\"spiffe://cluster.local/ns/demo/sa/client\""),
        "{metrics}"
    );
    assert!(metrics.contains("response_code=\"301\""), "{metrics}");
    assert!(
        metrics.contains("istio_request_duration_milliseconds_bucket{"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_timeouts_and_no_route() {
    let mesh = Mesh::start(42, ROUTES).await;
    let (s, body) = mesh.get([100, 4], "/fail", &[]).await;
    assert_eq!(s, 503, "without retry the failure shows: {body}");
    let (s, body) = mesh.get([100, 4], "/retry", &[]).await;
    assert_eq!(s, 200, "the retry succeeds: {body}");
    assert_eq!(
        mesh.flaky_hits.load(Ordering::SeqCst),
        2,
        "one failed attempt, one retry"
    );

    let started = std::time::Instant::now();
    let (s, body) = mesh.get([100, 4], "/slow", &[]).await;
    assert_eq!(s, 504, "{body}");
    assert_eq!(body, "upstream request timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "timed out early"
    );

    let (s, body) = mesh.get([100, 4], "/nothing-here", &[]).await;
    assert_eq!(s, 404, "{body}");
    let m = mesh.waypoint.metrics();
    assert!(
        m.contains("response_flags=\"NR\"") && m.contains("response_flags=\"UT\""),
        "{m}"
    );
}

#[test]
fn hostile_l7_yaml_is_refused_quickly() {
    let started = std::time::Instant::now();
    for text in [
        format!("kind: HTTPRoute\nspec: {}", "[".repeat(100_000)),
        format!(
            "kind: AuthorizationPolicy\nspec:\n{}x\n",
            "- ".repeat(100_000)
        ),
    ] {
        let e = L7Config::from_yaml(&text, "evil.yaml", "istio-system").expect_err("refused");
        assert!(e.to_string().contains("nested too deep"), "{e}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_addressed_traffic_goes_through_the_workload_waypoint() {
    let mesh = Mesh::start(44, ROUTES).await;
    let before = mesh
        .waypoint
        .metrics()
        .matches("istio_requests_total{")
        .count();
    // v1 has a waypoint: policy and telemetry apply, no HTTPRoute (routes attach to services).
    let (s, body) = mesh.get_pod([2, 2], 8080, "/direct").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.starts_with("app=reviews-v1 path=/direct"), "{body}");
    assert!(
        !body.contains("traceparent=-"),
        "the waypoint added a trace context: {body}"
    );
    let m = mesh.waypoint.metrics();
    assert!(m.matches("istio_requests_total{").count() > before, "{m}");
    assert!(m.contains("destination_workload=\"reviews-v1\""), "{m}");
    // v2 has none: node A tunnels straight to it, and no trace context is invented.
    let (s, body) = mesh.get_pod([2, 3], 8080, "/direct").await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("traceparent=-"),
        "bypassed the waypoint: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_halfway_leaves_nothing_listening() {
    let net = 55;
    let pki = ambit_test_util::TestPki::new();
    // Metrics (bound after the HBONE listener) is taken.
    let taken = TcpListener::bind(SocketAddr::new(ip(net, [0, 9]), 0))
        .await
        .expect("bind");
    let metrics = taken.local_addr().expect("addr");
    let f = (pki.source(), pki.tls.clone());
    let id = TrustDomain::new("cluster.local")
        .expect("td")
        .workload_id("demo", "waypoint")
        .expect("id");
    let mut wc = WaypointConfig::new("waypoint", "demo", id);
    wc.hbone = SocketAddr::new(ip(net, [3, 2]), 15008);
    wc.metrics = Some(metrics);
    wc.readiness = None;
    let e = Waypoint::start(
        wc,
        state(net),
        L7Config::default(),
        f.0.clone(),
        f.1.clone(),
    )
    .await
    .expect_err("metrics address in use");
    assert!(e.to_string().contains("metrics"), "{e}");
    bind_when_free(SocketAddr::new(ip(net, [3, 2]), 15008))
        .await
        .expect("the waypoint's HBONE port is free again");
    drop(taken);
}

/// A request over HTTP/2 (prior knowledge) from the client workload to `service` port 80.
async fn request_h2(mesh: &Mesh, service_vip: [u8; 2], req: Request<Full<Bytes>>) -> (u16, String) {
    let proxy = mesh.a.bound().socks5.expect("socks5");
    let to = SocketAddr::new(ip(mesh.net, service_vip), 80);
    let s = socks5_connect(proxy, ip(mesh.net, [1, 2]), &SocksTarget::Addr(to))
        .await
        .expect("socks5 to the service");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(s),
    )
    .await
    .expect("http2 handshake");
    tokio::spawn(conn);
    let resp = tokio::time::timeout(STEP, send.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_in_other_letter_case_never_slips_past_a_policy_and_dry_runs_and_audits_are_reported()
 {
    let policies = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-delete, namespace: demo}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: shadow-no-admin, namespace: demo, annotations: {istio.io/dry-run: "true"}}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-admin, namespace: demo}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: AUDIT
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
"#;
    let mesh = Mesh::start(48, policies).await;
    let with_method = |m: &[u8], path: &str| {
        Request::builder()
            .method(hyper::Method::from_bytes(m).expect("method"))
            .uri(path)
            .header("host", "reviews.demo.svc.cluster.local")
            .body(Full::new(Bytes::new()))
            .expect("req")
    };
    // The standard method is denied; the same in other letters is refused before any policy
    // runs, over HTTP/1.1 and HTTP/2; a real extension method is not refused.
    let (s, _, _) = mesh.request([100, 1], with_method(b"DELETE", "/x")).await;
    assert_eq!(s, 403);
    for m in [&b"delete"[..], b"Delete", b"dElEtE"] {
        let (s, body, _) = mesh.request([100, 1], with_method(m, "/x")).await;
        assert_eq!(
            (s, body.as_str()),
            (400, "method must be upper case"),
            "HTTP/1.1 {m:?}"
        );
        let uri = "http://reviews.demo.svc.cluster.local/x";
        let (s, body) = request_h2(&mesh, [100, 1], with_method(m, uri)).await;
        assert_eq!(
            (s, body.as_str()),
            (400, "method must be upper case"),
            "HTTP/2 {m:?}"
        );
    }
    let (s, body, _) = mesh.request([100, 1], with_method(b"PURGE", "/x")).await;
    assert_eq!(s, 200, "an extension method is routed as usual: {body}");

    // The dry-run DENY matches /admin: the request goes through, and the would-be deny is
    // counted (never for a path it does not match).
    let (s, body) = mesh.get([100, 1], "/admin", &[]).await;
    assert_eq!(s, 200, "a dry-run policy is never enforced: {body}");
    let (s, _) = mesh.get([100, 1], "/public", &[]).await;
    assert_eq!(s, 200);
    let metrics = mesh.waypoint.metrics();
    let line = |decision: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("ambit_dry_run_decisions_total{")
                    && l.contains(&format!("decision=\"{decision}\""))
            })
            .map(str::to_owned)
    };
    assert_eq!(
        line("deny").as_deref(),
        Some(
            "ambit_dry_run_decisions_total{reporter=\"waypoint\",decision=\"deny\",policy=\"demo/shadow-no-admin\"} 1"
        ),
        "{metrics}"
    );
    // The AUDIT policy matched /admin once (not /public) and changed nothing.
    let audits: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("ambit_authz_audit_total{"))
        .collect();
    assert_eq!(
        audits,
        ["ambit_authz_audit_total{reporter=\"waypoint\",policy=\"demo/audit-admin\"} 1"],
        "{metrics}"
    );
}
