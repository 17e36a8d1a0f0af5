//! `ambit-demo`: a whole mesh in one process on loopback. A built-in CA, two node proxies
//! (node-a on 127.0.0.2, node-b on 127.0.0.3), five workloads, Istio policies; it sends
//! traffic through the mesh, prints who could talk to whom and which policy decided, and a
//! metrics excerpt. `--serve` keeps it running for your own curl.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ambit_examples::{
    SocksError, Target, http_get, socks5_connect, spawn_echo_app, spawn_http_app,
};
use ambit_identity::{CaSource, CertificateAuthority, SpiffeId, SystemClock, TrustDomain};
use ambit_policy::Connection;
use ambit_proxy::{NodeConfig, NodeProxy};
use ambit_tls::{Provider, TlsContext};
use ambit_xds::local;
use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A one-command ambit mesh on loopback.
#[derive(Debug, Parser)]
#[command(name = "ambit-demo", version, about)]
struct Args {
    /// Keep the mesh running after the tour, until Ctrl-C.
    #[arg(long)]
    serve: bool,
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
services:
- {name: cart, namespace: shop, hostname: cart.shop.svc.cluster.local, vips: ["/10.96.0.10"], ports: {80: 8080}}
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
    target: Target,
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
    let credentials = Arc::new(CaSource::new(
        ca,
        Duration::from_secs(24 * 3600),
        Arc::new(SystemClock),
    ));
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
            credentials,
            tls,
        )
        .await
        .context(
            "starting node-b on 127.0.0.3 (are its ports 15000/15020/15021/15080/15081 free?)",
        )?,
    ];
    spawn_http_app("127.0.2.10:8080".parse()?, "cart").await?;
    spawn_echo_app("127.0.2.11:5432".parse()?).await?;

    println!("workloads:");
    println!("  node-a (127.0.0.2): frontend 127.0.1.10, batch 127.0.1.11   [ns shop]");
    println!("                      legacy-report 127.0.1.12                [ns legacy]");
    println!("  node-b (127.0.0.3): cart 127.0.2.10:8080 (service cart.shop.svc.cluster.local:80)");
    println!("                      db 127.0.2.11:5432                      [ns shop]");
    println!("policies: shop/cart-from-frontend (ALLOW), shop/db-from-cart (ALLOW),");
    println!("          istio-system/deny-legacy (DENY), PeerAuthentication shop/default STRICT\n");

    let cart_svc = || Target::Host("cart.shop.svc.cluster.local".into(), 80);
    let db = || Target::Addr("127.0.2.11:5432".parse().expect("literal"));
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
                        http_get(&mut s, "cart.shop.svc.cluster.local", "/").await?;
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
    let metrics = nodes[1].metrics();
    println!("node-b metrics (istio_tcp_connections_opened_total, abridged):");
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("istio_tcp_connections_opened_total{"))
    {
        let get = |k: &str| {
            line.split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?")
                .to_owned()
        };
        let value = line.rsplit(' ').next().unwrap_or("?");
        println!(
            "  reporter={} source_workload={} destination_workload={} response_flags={} => {value}",
            get("reporter"),
            get("source_workload"),
            get("destination_workload"),
            get("response_flags")
        );
    }
    if mismatches > 0 {
        bail!("{mismatches} data-path results disagree with the policy engine");
    }
    let b = nodes[0].bound();
    println!("\nall data-path results match the policy engine.");
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
    for (name, n) in [("node-a", &nodes[0]), ("node-b", &nodes[1])] {
        let b = n.bound();
        if let (Some(m), Some(a)) = (b.metrics, b.admin) {
            println!("  {name}: metrics http://{m}/metrics   config http://{a}/config_dump");
        }
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// The policy decision node-b makes for this call, computed by the engine for display.
fn explain(
    state: &ambit_xds::State,
    from: IpAddr,
    target: &Target,
) -> Result<ambit_policy::Decision> {
    let src = state
        .workload_by_addr("", from)
        .context("source workload")?;
    let (dst, port) = match target {
        Target::Addr(a) => (
            state
                .workload_by_addr("", a.ip())
                .context("destination")?
                .clone(),
            a.port(),
        ),
        Target::Host(h, p) => {
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
