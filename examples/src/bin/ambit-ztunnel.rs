//! `ambit-ztunnel`: a node proxy daemon with Istio ztunnel's behaviour. It joins a mesh as
//! ztunnel does, from ztunnel's environment variables (istiod's delta xDS for workloads,
//! services and policies; the Istio CA for certificates), or runs from ztunnel's local YAML
//! config (plus Istio policy YAML), reloaded when the file changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ambit_examples::{CredentialFlags, FileWatch, listen_addr as addr};
use ambit_identity::CredentialSource;
use ambit_node::{NodeConfig, NodeProxy};
use ambit_state::{LoadedConfig, State, local};
use ambit_tls::{Provider, TlsContext};
use ambit_xds::{AdsClient, IstioCaClient, ProxyMode, XdsConfig, ZtunnelEnv};
use anyhow::{Context, Result};
use clap::Parser;
use tracing::{error, info, warn};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A node proxy (Istio ztunnel behaviour) for the workloads of one node.
#[derive(Debug, Parser)]
#[command(name = "ambit-ztunnel", version, about)]
struct Args {
    /// Local config in ztunnel's LOCAL_XDS_PATH shape (workloads, services, policies). With
    /// it and no XDS_ADDRESS, the proxy runs from the file alone and reloads it on change.
    #[arg(long, env = "LOCAL_XDS_PATH")]
    config: Option<PathBuf>,
    /// Extra Istio AuthorizationPolicy / PeerAuthentication YAML files.
    #[arg(long = "policies")]
    policies: Vec<PathBuf>,
    /// This node's name: workloads whose `node` matches are served here.
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// The node's trust domain: the built-in CA's, and the only one accepted from peers.
    #[arg(long, env = "TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Directory with a CA made by `ambitctl ca init` (workload certificates are issued from
    /// it). Without it and without --cert-chain, an ephemeral CA is created (demo use).
    #[arg(long, conflicts_with = "cert_chain")]
    ca_dir: Option<PathBuf>,
    /// PEM certificate chain of the (single) workload identity, re-read when it changes.
    #[arg(long, requires_all = ["key", "root_cert"])]
    cert_chain: Option<PathBuf>,
    /// PEM private key for --cert-chain.
    #[arg(long)]
    key: Option<PathBuf>,
    /// PEM trust bundle for --cert-chain.
    #[arg(long)]
    root_cert: Option<PathBuf>,
    /// HBONE port bound on each local workload address.
    #[arg(long, default_value_t = 15008)]
    hbone_port: u16,
    /// SOCKS5 listener ("off" to disable).
    #[arg(long, default_value = "127.0.0.1:15080")]
    socks5: String,
    /// HTTP CONNECT listener ("off" to disable).
    #[arg(long, default_value = "off")]
    http_connect: String,
    /// Transparent outbound listener for iptables-redirected traffic ("off" to disable).
    #[arg(long, default_value = "off")]
    outbound_capture: String,
    /// Inbound plaintext listener for iptables-redirected traffic ("off" to disable).
    #[arg(long, default_value = "off")]
    inbound_plaintext: String,
    /// Prometheus metrics listener.
    #[arg(long, default_value = "127.0.0.1:15020")]
    metrics: String,
    /// Readiness listener.
    #[arg(long, default_value = "127.0.0.1:15021")]
    readiness: String,
    /// Admin listener (keep it on localhost).
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin: String,
    /// DNS proxy listener, UDP and TCP, for the workloads of the node ("off" to disable;
    /// in-pod mode runs one in every pod instead, unless ISTIO_META_DNS_CAPTURE=false).
    #[arg(long, default_value = "off")]
    dns: String,
    /// Where the DNS proxy sends names the mesh does not know: this file's nameservers.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Log format, access log included: `text`, or `json` for one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    log_format: ambit_examples::logging::LogFormat,
    /// How often to check the config files for changes.
    #[arg(long, default_value = "1")]
    reload_secs: u64,
    /// HBONE over HTTP/3 (QUIC on UDP --hbone-port), ambit's extension: `serve` answers it
    /// beside HTTP/2 and dials it only to workloads marked `hboneHttp3`; `dial` also dials
    /// every peer over it (falling back to HTTP/2 per peer that does not answer); `off`
    /// neither.
    #[arg(long, env = "AMBIT_HBONE_H3", default_value = "serve")]
    hbone_h3: H3Mode,
    /// A UDP way into the mesh, `LISTEN,SOURCE_IP,TARGET` (repeatable): datagrams sent to
    /// LISTEN travel as CONNECT-UDP flows, as the local workload at SOURCE_IP, to TARGET.
    #[arg(long = "udp-forward", value_name = "LISTEN,SOURCE_IP,TARGET")]
    udp_forwards: Vec<String>,
    /// Seconds without a datagram after which a UDP flow is closed.
    #[arg(long, default_value_t = 60)]
    udp_idle_secs: u64,
    /// Threads that carry the proxy's traffic (ztunnel's variable and default).
    #[arg(long, env = "ZTUNNEL_WORKER_THREADS", default_value = "2")]
    worker_threads: std::num::NonZeroUsize,
}

/// `--hbone-h3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum H3Mode {
    Off,
    Serve,
    Dial,
}

/// Parses `--udp-forward LISTEN,SOURCE_IP,TARGET`.
fn udp_forward(spec: &str) -> Result<ambit_node::udp::UdpForward> {
    let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
    let [listen, source, target] = parts[..] else {
        anyhow::bail!("--udp-forward {spec:?}: expected LISTEN,SOURCE_IP,TARGET");
    };
    let field = |what: &str, e: &dyn std::fmt::Display| {
        anyhow::anyhow!("--udp-forward {spec:?}: {what}: {e}")
    };
    Ok(ambit_node::udp::UdpForward::new(
        listen.parse().map_err(|e| field("LISTEN", &e))?,
        source.parse().map_err(|e| field("SOURCE_IP", &e))?,
        target.parse().map_err(|e| field("TARGET", &e))?,
    ))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    ambit_examples::logging::init_logging_as(args.log_format, "info");
    let workers = args.worker_threads;
    ambit_examples::run_main_on("ambit-ztunnel", Some(workers), run(args))
}

async fn run(args: Args) -> Result<()> {
    let mut env = ZtunnelEnv::from_process(args.config.as_deref())?;
    // --node and NODE_NAME are one setting (clap reads the variable into the flag).
    env.node_name = Some(args.node.clone());
    let td = ambit_identity::TrustDomain::new(&args.trust_domain).context("--trust-domain")?;
    if args.config.is_none() && !args.policies.is_empty() {
        anyhow::bail!("--policies needs --config (a local config to add them to)");
    }
    let state = match &args.config {
        Some(c) => {
            let loaded = load(c, &args.policies)?;
            for w in &loaded.warnings {
                warn!("{w}");
            }
            loaded.state
        }
        None => State::new(),
    };
    let credentials = credentials(&args, &env, td)?;
    let mut config = NodeConfig::new(&args.node);
    config.inbound_port = args.hbone_port;
    config.socks5 = addr("socks5", &args.socks5)?;
    config.http_connect = addr("http-connect", &args.http_connect)?;
    config.outbound_capture = addr("outbound-capture", &args.outbound_capture)?;
    config.inbound_plaintext = addr("inbound-plaintext", &args.inbound_plaintext)?;
    config.metrics = addr("metrics", &args.metrics)?;
    config.readiness = addr("readiness", &args.readiness)?;
    config.admin = addr("admin", &args.admin)?;
    config.json_access_log = args.log_format == ambit_examples::logging::LogFormat::Json;
    config.serve_h3 = args.hbone_h3 != H3Mode::Off;
    config.dial_h3 = args.hbone_h3 == H3Mode::Dial;
    config.udp_forwards = args
        .udp_forwards
        .iter()
        .map(|f| udp_forward(f))
        .collect::<Result<_>>()?;
    config.udp_idle_timeout = Duration::from_secs(args.udp_idle_secs.max(1));
    config.exporter = ambit_examples::otlp::otlp_from_env("ambit-ztunnel")?;
    config.inpod = env.inpod_uds.is_some();
    config.dns = addr("dns", &args.dns)?;
    config.dns_capture = config.inpod && env.dns_capture;
    if config.dns.is_some() || config.dns_capture {
        let text = std::fs::read_to_string(&args.resolv_conf)
            .with_context(|| format!("--resolv-conf {}", args.resolv_conf.display()))?;
        config.resolver.upstreams = ambit_node::dns::nameservers(&text);
        if config.resolver.upstreams.is_empty() {
            warn!(file = %args.resolv_conf.display(), "no nameserver: the DNS proxy answers only the mesh's names");
        }
    }
    if let Some(x) = &env.xds {
        config
            .readiness_gates
            .push(ambit_examples::xds_gate(&x.address));
    }
    if config.inpod {
        // In-pod, capture happens in each pod's namespace, on ztunnel's fixed ports.
        config.outbound_capture = None;
        config.inbound_plaintext = None;
    }
    let mut proxy = NodeProxy::start(
        config,
        state.clone(),
        credentials,
        TlsContext::new(Provider::default()),
    )
    .await
    .context("starting the node proxy")?;
    if let Some(uds) = &env.inpod_uds {
        proxy
            .serve_zds(uds.clone())
            .context("serving pods from the node agent")?;
    }
    info!(
        node = %args.node,
        local_workloads = proxy.state().workloads_on(&args.node).count(),
        bound = ?proxy.bound(),
        xds = ?env.xds.as_ref().map(|x| x.address.to_string()),
        inpod = ?env.inpod_uds,
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        "ambit-ztunnel ready"
    );
    match env.xds.clone() {
        Some(control) => {
            follow_xds(
                &proxy,
                XdsConfig {
                    control,
                    node: env.node(),
                },
                state,
            );
            ambit_examples::shutdown_signal().await;
        }
        None => reload_loop(&proxy, &args).await,
    }
    info!(deadline = ?env.drain_deadline, "shutting down: draining open connections");
    proxy.shutdown(env.drain_deadline).await;
    Ok(())
}

/// Where certificates come from: the flags' CA directory or PEM files, else the Istio CA the
/// environment names, else (no control plane at all) an ephemeral built-in CA.
fn credentials(
    args: &Args,
    env: &ZtunnelEnv,
    td: ambit_identity::TrustDomain,
) -> Result<Arc<dyn CredentialSource>> {
    let flags = CredentialFlags {
        ca_dir: args.ca_dir.clone(),
        cert_chain: args.cert_chain.clone(),
        key: args.key.clone(),
        root_cert: args.root_cert.clone(),
    };
    if flags.ca_dir.is_some() || flags.cert_chain.is_some() {
        return ambit_examples::credentials(td, &flags);
    }
    match (&env.ca, &env.xds) {
        (Some(ca), _) => {
            info!(ca = %ca.address, ttl = ?env.secret_ttl, "certificates from the Istio CA");
            let impersonate = env.proxy_mode == ProxyMode::Shared;
            Ok(Arc::new(IstioCaClient::new(
                ca.clone(),
                td,
                env.secret_ttl,
                impersonate,
            )))
        }
        (None, Some(_)) => anyhow::bail!(
            "CA_ADDRESS is empty but xDS is on: give a CA address, --ca-dir or --cert-chain"
        ),
        (None, None) => ambit_examples::credentials(td, &flags),
    }
}

/// Runs the xDS client: every accepted push replaces the proxy's state; readiness holds
/// [`ambit_examples::XDS_GATE`] (set in the config, before anything binds) until the first sync is applied
/// and the local workloads' listeners follow it; `/config_dump` shows the client's status.
fn follow_xds(proxy: &NodeProxy, config: XdsConfig, initial: State) {
    let updater = proxy.updater();
    let settled = updater.clone();
    let client = AdsClient::new(
        config,
        initial,
        Box::new(move |state| {
            let closed = updater.update(state);
            if closed > 0 {
                info!(
                    closed_connections = closed,
                    "pushed policy closed open connections"
                );
            }
        }),
    );
    let status = client.status();
    proxy.add_dump_section(
        "xds",
        Arc::new(move || serde_json::to_value(status.get()).unwrap_or_default()),
    );
    let mut synced = client.synced();
    let readiness = proxy.readiness().clone();
    tokio::spawn(async move {
        if synced.wait_for(|s| *s).await.is_ok() {
            settled.settled().await;
            readiness.unblock(ambit_examples::XDS_GATE);
        }
    });
    tokio::spawn(client.run());
}

/// Reloads the local config (and policy files) whenever one changes, until Ctrl-C.
async fn reload_loop(proxy: &NodeProxy, args: &Args) {
    let Some(config) = &args.config else {
        ambit_examples::shutdown_signal().await;
        return;
    };
    let mut files = args.policies.clone();
    files.push(config.clone());
    let mut watch = FileWatch::new(files, Duration::from_secs(args.reload_secs));
    while ambit_examples::changed_or_interrupted(&mut watch).await {
        match load(config, &args.policies) {
            Ok(cfg) => {
                for w in &cfg.warnings {
                    warn!("{w}");
                }
                let closed = proxy.update(cfg.state);
                info!(closed_connections = closed, "configuration reloaded");
            }
            Err(e) => error!("configuration not reloaded, keeping the last good one: {e:#}"),
        }
    }
}

fn load(config: &Path, policies: &[PathBuf]) -> Result<LoadedConfig> {
    let mut cfg = local::load_file(config)?;
    for p in policies {
        let yaml =
            std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
        local::add_istio_policies(&mut cfg, &yaml, &p.display().to_string())?;
    }
    Ok(cfg)
}
