//! `ambit-ztunnel`: a node proxy daemon with Istio ztunnel's behaviour, configured from
//! ztunnel's local YAML config (plus Istio policy YAML), reloaded when the file changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ambit_examples::{CredentialFlags, FileWatch, listen_addr as addr};
use ambit_identity::TrustDomain;
use ambit_node::{NodeConfig, NodeProxy};
use ambit_state::{LoadedConfig, local};
use ambit_tls::{Provider, TlsContext};
use anyhow::{Context, Result};
use clap::Parser;
use tracing::{error, info, warn};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A node proxy (Istio ztunnel behaviour) for the workloads of one node.
#[derive(Debug, Parser)]
#[command(name = "ambit-ztunnel", version, about)]
struct Args {
    /// Local config in ztunnel's LOCAL_XDS_PATH shape (workloads, services, policies).
    #[arg(long, env = "LOCAL_XDS_PATH")]
    config: PathBuf,
    /// Extra Istio AuthorizationPolicy / PeerAuthentication YAML files.
    #[arg(long = "policies")]
    policies: Vec<PathBuf>,
    /// This node's name: workloads whose `node` matches are served here.
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// Trust domain of the built-in CA.
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
    /// Access log format.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// How often to check the config files for changes.
    #[arg(long, default_value = "1")]
    reload_secs: u64,
}

fn main() -> std::process::ExitCode {
    ambit_examples::init_logging("info");
    let args = Args::parse();
    ambit_examples::run_main("ambit-ztunnel", run(args))
}

async fn run(args: Args) -> Result<()> {
    let loaded = load(&args.config, &args.policies)?;
    for w in &loaded.warnings {
        warn!("{w}");
    }
    let td = TrustDomain::new(&args.trust_domain).context("--trust-domain")?;
    let credentials = ambit_examples::credentials(
        td,
        &CredentialFlags {
            ca_dir: args.ca_dir.clone(),
            cert_chain: args.cert_chain.clone(),
            key: args.key.clone(),
            root_cert: args.root_cert.clone(),
        },
    )?;
    let mut config = NodeConfig::new(&args.node);
    config.inbound_port = args.hbone_port;
    config.socks5 = addr("socks5", &args.socks5)?;
    config.http_connect = addr("http-connect", &args.http_connect)?;
    config.outbound_capture = addr("outbound-capture", &args.outbound_capture)?;
    config.inbound_plaintext = addr("inbound-plaintext", &args.inbound_plaintext)?;
    config.metrics = addr("metrics", &args.metrics)?;
    config.readiness = addr("readiness", &args.readiness)?;
    config.admin = addr("admin", &args.admin)?;
    config.json_access_log = args.log_format == "json";
    let proxy = NodeProxy::start(
        config,
        loaded.state,
        credentials,
        TlsContext::new(Provider::default()),
    )
    .await
    .context("starting the node proxy")?;
    let local = proxy
        .state()
        .workloads()
        .filter(|w| w.node == args.node)
        .count();
    info!(node = %args.node, local_workloads = local, bound = ?proxy.bound(), "ambit-ztunnel ready");

    let mut files = args.policies.clone();
    files.push(args.config.clone());
    let mut watch = FileWatch::new(files, Duration::from_secs(args.reload_secs));
    while ambit_examples::changed_or_interrupted(&mut watch).await {
        match load(&args.config, &args.policies) {
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
    info!("shutting down: draining for up to 5 s");
    proxy.shutdown(Duration::from_secs(5)).await;
    Ok(())
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
