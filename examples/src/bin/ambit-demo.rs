//! `ambit-demo`: a whole mesh in one process on loopback. A built-in CA, two node proxies
//! (node-a on 127.0.0.2, node-b on 127.0.0.3), a waypoint (127.0.3.10), workloads, Istio
//! policies; it sends traffic through the mesh, prints who could talk to whom and which policy
//! decided, then the L7 part: a 90/10 canary, a header-routed feature flag and a JWT-protected
//! path through the waypoint, with metrics excerpts. `--serve` keeps it running for your curl.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ambit_authz::Connection;
use ambit_examples::{SocksError, SocksTarget, http_get, http_hello, socks5_connect, tcp_echo};
use ambit_identity::{CaSource, CertificateAuthority, SpiffeId, TrustDomain};
use ambit_node::{NodeConfig, NodeProxy};
use ambit_state::local;
use ambit_test_util::jwt::JwtSigner;
use ambit_tls::{Provider, TlsContext};
use ambit_waypoint::{L7Config, Waypoint, WaypointConfig};
use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A one-command ambit mesh on loopback.
#[derive(Debug, Parser)]
#[command(name = "ambit-demo", version, about)]
struct Args {
    /// Keep the mesh running after the tour, with light traffic and a live service graph,
    /// until Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// Where `--serve` serves the service graph.
    #[arg(long, default_value = "127.0.0.1:15030")]
    graph: SocketAddr,
}

const MESH: &str = r#"
workloads:
- {uid: demo/frontend, name: frontend, namespace: shop, serviceAccount: frontend, workloadIps: [127.0.1.10], node: node-a, canonicalName: frontend, canonicalRevision: v1, labels: {app: frontend}}
- {uid: demo/batch, name: batch, namespace: shop, serviceAccount: batch, workloadIps: [127.0.1.11], node: node-a, canonicalName: batch, canonicalRevision: v1, labels: {app: batch}}
- {uid: demo/legacy, name: legacy-report, namespace: legacy, serviceAccount: reporter, workloadIps: [127.0.1.12], node: node-a, canonicalName: legacy-report, canonicalRevision: v0}
- uid: demo/cart
  name: cart
  namespace: shop
  serviceAccount: cart
  workloadIps: [127.0.2.10]
  node: node-b
  canonicalName: cart
  canonicalRevision: v1
  labels: {app: cart}
  services: {"shop/cart.shop.svc.cluster.local": {80: 8080}}
- {uid: demo/db, name: db, namespace: shop, serviceAccount: db, workloadIps: [127.0.2.11], node: node-b, canonicalName: db, canonicalRevision: v1, labels: {app: db}}
- uid: demo/reviews-v1
  name: reviews-v1
  namespace: shop
  serviceAccount: reviews
  workloadIps: [127.0.2.20]
  node: node-b
  canonicalName: reviews
  canonicalRevision: v1
  services: {"shop/reviews.shop.svc.cluster.local": {80: 9080}, "shop/reviews-v1.shop.svc.cluster.local": {80: 9080}}
- uid: demo/reviews-v2
  name: reviews-v2
  namespace: shop
  serviceAccount: reviews
  workloadIps: [127.0.2.21]
  node: node-b
  canonicalName: reviews
  canonicalRevision: v2
  services: {"shop/reviews.shop.svc.cluster.local": {80: 9080}, "shop/reviews-v2.shop.svc.cluster.local": {80: 9080}}
- {uid: demo/waypoint, name: waypoint, namespace: shop, serviceAccount: waypoint, workloadIps: [127.0.3.10], node: waypoint, canonicalName: waypoint}
services:
- {name: cart, namespace: shop, hostname: cart.shop.svc.cluster.local, vips: ["/10.96.0.10"], ports: {80: 8080}}
- {name: reviews, namespace: shop, hostname: reviews.shop.svc.cluster.local, vips: ["/10.96.0.20"], ports: {80: 9080}, waypoint: {destination: "/127.0.3.10"}}
- {name: reviews-v1, namespace: shop, hostname: reviews-v1.shop.svc.cluster.local, vips: ["/10.96.0.21"], ports: {80: 9080}}
- {name: reviews-v2, namespace: shop, hostname: reviews-v2.shop.svc.cluster.local, vips: ["/10.96.0.22"], ports: {80: 9080}}
istioPolicies:
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: cart-from-frontend, namespace: shop}
  spec:
    selector: {matchLabels: {app: cart}}
    rules:
    - from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}]
      to: [{operation: {ports: ["8080"]}}]
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: db-from-cart, namespace: shop}
  spec:
    selector: {matchLabels: {app: db}}
    rules:
    - from: [{source: {serviceAccounts: ["cart"]}}]
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny-legacy, namespace: istio-system}
  spec:
    action: DENY
    rules:
    - from: [{source: {namespaces: ["legacy"]}}]
- apiVersion: security.istio.io/v1
  kind: PeerAuthentication
  metadata: {name: default, namespace: shop}
  spec: {mtls: {mode: STRICT}}
"#;

struct Call {
    from: &'static str,
    from_ip: [u8; 4],
    via: usize,
    to: &'static str,
    target: SocksTarget,
    http: bool,
}

fn main() -> std::process::ExitCode {
    ambit_examples::init_logging("warn");
    let args = Args::parse();
    ambit_examples::run_main("ambit-demo", run(args))
}

async fn run(args: Args) -> Result<()> {
    println!("ambit demo: a two-node mesh on loopback\n");
    let loaded = local::parse(MESH, "<demo mesh>")?;
    let state = loaded.state;
    let td = TrustDomain::new("cluster.local")?;
    let ca = Arc::new(CertificateAuthority::new(td)?);
    let credentials = Arc::new(CaSource::with_default_ttl(ca));
    let tls = TlsContext::new(Provider::default());
    let node_config = |name: &str, ip: [u8; 4]| {
        let mut c = NodeConfig::new(name);
        let at = |port| Some(SocketAddr::from((ip, port)));
        c.socks5 = at(15080);
        c.http_connect = at(15081);
        c.metrics = at(15020);
        c.readiness = at(15021);
        c.admin = at(15000);
        c
    };
    let nodes = [
        NodeProxy::start(
            node_config("node-a", [127, 0, 0, 2]),
            state.clone(),
            credentials.clone(),
            tls.clone(),
        )
        .await
        .context(
            "starting node-a on 127.0.0.2 (are its ports 15000/15020/15021/15080/15081 free?)",
        )?,
        NodeProxy::start(
            node_config("node-b", [127, 0, 0, 3]),
            state.clone(),
            credentials.clone(),
            tls.clone(),
        )
        .await
        .context(
            "starting node-b on 127.0.0.3 (are its ports 15000/15020/15021/15080/15081 free?)",
        )?,
    ];
    http_hello("127.0.2.10:8080".parse()?, "cart").await?;
    tcp_echo("127.0.2.11:5432".parse()?).await?;

    println!("workloads:");
    println!("  node-a (127.0.0.2): frontend 127.0.1.10, batch 127.0.1.11   [ns shop]");
    println!("                      legacy-report 127.0.1.12                [ns legacy]");
    println!("  node-b (127.0.0.3): cart 127.0.2.10:8080 (service cart.shop.svc.cluster.local:80)");
    println!("                      db 127.0.2.11:5432                      [ns shop]");
    println!("policies: shop/cart-from-frontend (ALLOW), shop/db-from-cart (ALLOW),");
    println!("          istio-system/deny-legacy (DENY), PeerAuthentication shop/default STRICT\n");

    let cart_svc = || SocksTarget::Host("cart.shop.svc.cluster.local".into(), 80);
    let db = || SocksTarget::Addr("127.0.2.11:5432".parse().expect("literal"));
    let calls = [
        Call {
            from: "frontend",
            from_ip: [127, 0, 1, 10],
            via: 0,
            to: "cart (svc:80)",
            target: cart_svc(),
            http: true,
        },
        Call {
            from: "batch",
            from_ip: [127, 0, 1, 11],
            via: 0,
            to: "cart (svc:80)",
            target: cart_svc(),
            http: true,
        },
        Call {
            from: "legacy-report",
            from_ip: [127, 0, 1, 12],
            via: 0,
            to: "cart (svc:80)",
            target: cart_svc(),
            http: true,
        },
        Call {
            from: "frontend",
            from_ip: [127, 0, 1, 10],
            via: 0,
            to: "db :5432",
            target: db(),
            http: false,
        },
        Call {
            from: "cart",
            from_ip: [127, 0, 2, 10],
            via: 1,
            to: "db :5432",
            target: db(),
            http: false,
        },
    ];
    println!(
        "{:<14} {:<15} {:<9} decided by (node-b's L4 policy)",
        "from", "to", "result"
    );
    println!("{}", "-".repeat(78));
    let mut mismatches = 0;
    for c in &calls {
        let proxy = nodes[c.via].bound().socks5.context("socks5 listener")?;
        let from = IpAddr::from(c.from_ip);
        let outcome = socks5_connect(proxy, from, &c.target).await;
        let (result, detail) = match outcome {
            Ok(mut s) => {
                if c.http {
                    let (status, body) =
                        http_get(&mut s, "cart.shop.svc.cluster.local", "/", &[]).await?;
                    ("allowed", format!("HTTP {status}: {}", body.trim()))
                } else {
                    s.write_all(b"ping").await?;
                    let mut back = [0u8; 4];
                    s.read_exact(&mut back).await?;
                    ("allowed", "echo ok".to_owned())
                }
            }
            Err(SocksError::Refused(2)) => ("DENIED", "401 from node-b".to_owned()),
            Err(SocksError::Refused(code)) => ("failed", format!("SOCKS5 reply {code}")),
            Err(SocksError::Io(e)) => return Err(e.into()),
        };
        let decision = explain(&state, from, &c.target)?;
        if (result == "allowed") != decision.allowed {
            mismatches += 1;
        }
        println!("{:<14} {:<15} {:<9} {}", c.from, c.to, result, decision);
        println!("{:<14} {:<15} {:<9}   {}", "", "", "", detail);
    }
    println!();
    println!("node-b metrics (istio_tcp_connections_opened_total, abridged):");
    print_series(
        &nodes[1].metrics(),
        "istio_tcp_connections_opened_total",
        &[
            "reporter",
            "source_workload",
            "destination_workload",
            "response_flags",
        ],
    );
    if mismatches > 0 {
        bail!("{mismatches} data-path results disagree with the policy engine");
    }
    println!("\nall data-path results match the policy engine.");

    let waypoint = waypoint_tour(&nodes[0], state.clone(), credentials, tls).await?;
    let b = nodes[0].bound();
    if !args.serve {
        println!("(run with --serve to keep the mesh up and try it yourself)");
        return Ok(());
    }
    println!("\nthe mesh is running; try (Ctrl-C to stop):");
    if let Some(s) = b.socks5 {
        println!(
            "  curl --socks5-hostname {s} --interface 127.0.1.10 http://cart.shop.svc.cluster.local/"
        );
        println!(
            "  curl --socks5-hostname {s} --interface 127.0.1.11 http://cart.shop.svc.cluster.local/   # denied"
        );
    }
    if let Some(s) = b.socks5 {
        println!(
            "  curl --socks5-hostname {s} --interface 127.0.1.10 -H 'x-feature: beta' http://reviews.shop.svc.cluster.local/"
        );
    }
    for (name, n) in [("node-a", &nodes[0]), ("node-b", &nodes[1])] {
        let b = n.bound();
        if let (Some(m), Some(a)) = (b.metrics, b.admin) {
            println!("  {name}: metrics http://{m}/metrics   config http://{a}/config_dump");
        }
    }
    if let Some(m) = waypoint.bound().metrics {
        println!("  waypoint: metrics http://{m}/metrics");
    }
    let mut scrape: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.bound().metrics)
        .map(|m| format!("http://{m}/metrics"))
        .collect();
    scrape.extend(
        waypoint
            .bound()
            .metrics
            .map(|m| format!("http://{m}/metrics")),
    );
    let listener = tokio::net::TcpListener::bind(args.graph)
        .await
        .with_context(|| format!("--graph {} (is the port free?)", args.graph))?;
    let graph_at = listener.local_addr()?;
    let _graph = ambit_examples::graph::serve_graph(
        listener,
        ambit_examples::graph::GraphOptions {
            source: ambit_examples::graph::GraphSource::Metrics(scrape),
            interval: Duration::from_secs(1),
            window: Duration::from_secs(20),
        },
    );
    let _traffic = tokio::spawn(traffic(b.socks5.context("socks5 listener")?));
    println!("\nservice graph (live, with light traffic): http://{graph_at}/");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Light, steady traffic for the live graph: frontend calls reviews (the 90/10 canary) ten
/// times a second and cart twice; batch keeps trying cart and is denied.
async fn traffic(socks5: SocketAddr) {
    let frontend = IpAddr::from([127, 0, 1, 10]);
    let batch = IpAddr::from([127, 0, 1, 11]);
    let svc = |name: &str| SocksTarget::Host(format!("{name}.shop.svc.cluster.local"), 80);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for n in 0u64.. {
        tick.tick().await;
        let mut calls = vec![(frontend, "reviews")];
        if n % 5 == 0 {
            calls.push((frontend, "cart"));
        }
        if n % 10 == 0 {
            calls.push((batch, "cart"));
        }
        for (from, to) in calls {
            if let Ok(mut s) = socks5_connect(socks5, from, &svc(to)).await {
                let host = format!("{to}.shop.svc.cluster.local");
                let _ = http_get(&mut s, &host, "/", &[]).await;
            }
        }
    }
}

/// The waypoint for `reviews`: a 90/10 canary, a header-routed feature flag, and a path that
/// needs a JWT from the demo's own issuer.
async fn waypoint_tour(
    node_a: &NodeProxy,
    state: ambit_state::State,
    credentials: Arc<CaSource>,
    tls: TlsContext,
) -> Result<Waypoint> {
    let issuer = "https://auth.demo.local";
    // The demo's own token issuer: an ES256 key, its JWKS, and tokens it signs.
    let key = JwtSigner::es256("demo");
    let key_jwks = ambit_test_util::jwt::jwks(&[&key]);
    let l7 = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: reviews, namespace: shop}}
spec:
  parentRefs: [{{group: "", kind: Service, name: reviews, port: 80}}]
  rules:
  - matches: [{{headers: [{{name: x-feature, value: beta}}]}}]
    backendRefs: [{{name: reviews-v2, port: 80}}]
  - backendRefs:
    - {{name: reviews-v1, port: 80, weight: 90}}
    - {{name: reviews-v2, port: 80, weight: 10}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: demo-issuer, namespace: shop}}
spec:
  targetRefs: [{{group: "", kind: Service, name: reviews}}]
  jwtRules: [{{issuer: "{issuer}", jwks: '{}'}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: admin-needs-jwt, namespace: shop}}
spec:
  targetRefs: [{{group: "", kind: Service, name: reviews}}]
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["/admin", "/admin/*"]}}}}]
    from: [{{source: {{notRequestPrincipals: ["*"]}}}}]
"#,
        key_jwks
    );
    let (l7, warnings) = L7Config::from_yaml(&l7, "<demo routes and policies>", "istio-system")?;
    for w in warnings {
        println!("  warning: {w}");
    }
    let id = TrustDomain::new("cluster.local")?.workload_id("shop", "waypoint")?;
    let mut config = WaypointConfig::new("waypoint", "shop", id);
    config.hbone = "127.0.3.10:15008".parse()?;
    config.metrics = Some("127.0.3.10:15020".parse()?);
    config.readiness = None;
    let waypoint = Waypoint::start(config, state, l7, credentials, tls)
        .await
        .context("starting the waypoint on 127.0.3.10 (are ports 15008/15020 free?)")?;
    http_hello("127.0.2.20:9080".parse()?, "reviews-v1").await?;
    http_hello("127.0.2.21:9080".parse()?, "reviews-v2").await?;

    println!("\nL7: service reviews uses the waypoint shop/waypoint (127.0.3.10)");
    println!(
        "  HTTPRoute shop/reviews: x-feature: beta -> reviews-v2; else reviews-v1 90 / reviews-v2 10"
    );
    println!("  RequestAuthentication shop/demo-issuer ({issuer}); /admin needs a valid JWT\n");
    let proxy = node_a.bound().socks5.context("socks5 listener")?;
    let get = |headers: Vec<(&'static str, String)>, path: &'static str| async move {
        let mut s = socks5_connect(
            proxy,
            IpAddr::from([127, 0, 1, 10]),
            &SocksTarget::Host("reviews.shop.svc.cluster.local".into(), 80),
        )
        .await
        .map_err(|e| anyhow::anyhow!("SOCKS5 to reviews: {e:?}"))?;
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = http_get(&mut s, "reviews.shop.svc.cluster.local", path, &h).await?;
        Ok::<_, anyhow::Error>(got)
    };
    let (mut v1, mut v2) = (0, 0);
    for _ in 0..100 {
        let (status, body) = get(vec![], "/").await?;
        match (status, body.contains("reviews-v2")) {
            (200, true) => v2 += 1,
            (200, false) => v1 += 1,
            _ => bail!("canary request failed: HTTP {status}: {body}"),
        }
    }
    println!("  100 x GET /                      -> reviews-v1: {v1}, reviews-v2: {v2}");
    let (status, body) = get(vec![("x-feature", "beta".into())], "/").await?;
    println!(
        "  GET / with x-feature: beta      -> HTTP {status}: {}",
        body.trim()
    );
    if !body.contains("reviews-v2") {
        bail!("the feature flag did not route to reviews-v2");
    }
    let checks = [
        ("GET /admin without a token     ", vec![], 403),
        (
            "GET /admin with a demo JWT     ",
            vec![(
                "authorization",
                format!("Bearer {}", demo_token(&key, issuer, "alice", 600)?),
            )],
            200,
        ),
        (
            "GET /admin with an expired JWT ",
            vec![(
                "authorization",
                format!("Bearer {}", demo_token(&key, issuer, "alice", -3600)?),
            )],
            401,
        ),
    ];
    for (what, headers, want) in checks {
        let (status, body) = get(headers, "/admin").await?;
        println!("  {what} -> HTTP {status}: {}", body.trim());
        if status != want {
            bail!("expected HTTP {want}");
        }
    }
    println!("\nwaypoint metrics (istio_requests_total, abridged):");
    print_series(
        &waypoint.metrics(),
        "istio_requests_total",
        &[
            "reporter",
            "source_workload",
            "destination_workload",
            "response_code",
        ],
    );
    Ok(waypoint)
}

/// Prints each series of `family` in Prometheus text as `label=value ... => count`.
fn print_series(metrics: &str, family: &str, labels: &[&str]) {
    let prefix = format!("{family}{{");
    for line in metrics.lines().filter(|l| l.starts_with(&prefix)) {
        let get = |k: &str| {
            line.split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?")
        };
        let shown: Vec<String> = labels.iter().map(|k| format!("{k}={}", get(k))).collect();
        let value = line.rsplit(' ').next().unwrap_or("?");
        println!("  {} => {value}", shown.join(" "));
    }
}

/// A token from the demo's issuer for `sub`, expiring in `expires_in` seconds.
fn demo_token(key: &JwtSigner, issuer: &str, sub: &str, expires_in: i64) -> Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let claims =
        serde_json::json!({"iss": issuer, "sub": sub, "iat": now, "exp": now + expires_in});
    Ok(key.sign(&claims))
}

/// The policy decision node-b makes for this call, computed by the engine for display.
fn explain(
    state: &ambit_state::State,
    from: IpAddr,
    target: &SocksTarget,
) -> Result<ambit_authz::Decision> {
    let src = state
        .workload_by_addr("", from)
        .context("source workload")?;
    let (dst, port) = match target {
        SocksTarget::Addr(a) => (
            state
                .workload_by_addr("", a.ip())
                .context("destination")?
                .clone(),
            a.port(),
        ),
        SocksTarget::Host(h, p) => {
            let svc = state.service_by_hostname(h).context("service")?;
            let eps = state.endpoints(svc, *p);
            let (w, port) = eps.first().context("endpoint")?.clone();
            (w, port)
        }
    };
    let id: SpiffeId = src.identity()?;
    let conn = Connection {
        source_id: Some(&id),
        source_ip: from,
        destination_ip: dst.address().context("destination address")?,
        destination_port: port,
    };
    Ok(state.applicable_policies(&dst).evaluate(&conn))
}
