//! `ambit-waypoint`: an Istio ambient waypoint (L7 proxy). Mesh state (which services and
//! workloads use this waypoint, and their endpoints) comes from istiod's workload API over
//! delta xDS when `XDS_ADDRESS` is set (ztunnel's environment contract, certificates from the
//! Istio CA), or from ztunnel's local YAML config; routes and policies from Gateway API
//! `HTTPRoute`, Istio `AuthorizationPolicy` and `RequestAuthentication` YAML. Every file is
//! reloaded when it changes; a broken file keeps the last good config in force.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ambit_examples::{CredentialFlags, FileWatch, listen_addr};
use ambit_identity::{CredentialSource, TrustDomain};
use ambit_tls::{Provider, TlsContext};
use ambit_waypoint::{L7Config, Waypoint, WaypointConfig};
use ambit_xds::{AdsClient, IstioCaClient, XdsConfig, ZtunnelEnv};
use anyhow::{Context, Result};
use clap::Parser;
use tracing::{error, info, warn};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An Istio ambient waypoint: HBONE in, JWT + L7 authorization + HTTPRoute, HBONE out.
#[derive(Debug, Parser)]
#[command(name = "ambit-waypoint", version, about)]
struct Args {
    /// Local config in ztunnel's LOCAL_XDS_PATH shape (workloads, services; services and
    /// workloads name their waypoint with `waypoint: {destination: ...}`).
    #[arg(long, env = "LOCAL_XDS_PATH")]
    config: Option<PathBuf>,
    /// HTTPRoute / AuthorizationPolicy / RequestAuthentication YAML files (multi-document).
    #[arg(long = "l7")]
    l7: Vec<PathBuf>,
    /// The waypoint Gateway's name (what policies' `targetRefs` of kind Gateway name).
    #[arg(long, default_value = "waypoint")]
    name: String,
    /// Its namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Its service account (default: the name, as Istio deploys waypoints).
    #[arg(long)]
    service_account: Option<String>,
    /// Trust domain.
    #[arg(long, env = "TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Istio's root namespace (for mesh-wide policies).
    #[arg(long, default_value = "istio-system")]
    root_namespace: String,
    /// Directory with a CA made by `ambitctl ca init`.
    #[arg(long, conflicts_with = "cert_chain")]
    ca_dir: Option<PathBuf>,
    /// PEM certificate chain of the waypoint identity, re-read when it changes.
    #[arg(long, requires_all = ["key", "root_cert"])]
    cert_chain: Option<PathBuf>,
    /// PEM private key for --cert-chain.
    #[arg(long)]
    key: Option<PathBuf>,
    /// PEM trust bundle for --cert-chain.
    #[arg(long)]
    root_cert: Option<PathBuf>,
    /// Extra trust anchors (PEM file) for https jwksUri fetches, beside the system's.
    #[arg(long)]
    jwks_ca: Option<PathBuf>,
    /// HBONE listener.
    #[arg(long, default_value = "0.0.0.0:15008")]
    hbone: String,
    /// Prometheus metrics listener ("off" to disable).
    #[arg(long, default_value = "0.0.0.0:15020")]
    metrics: String,
    /// Readiness listener ("off" to disable).
    #[arg(long, default_value = "0.0.0.0:15021")]
    readiness: String,
    /// Log format, access log included: `text`, or `json` for one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    log_format: ambit_examples::logging::LogFormat,
    /// How often to check the files for changes.
    #[arg(long, default_value = "1")]
    reload_secs: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    ambit_examples::logging::init_logging_as(args.log_format, "info");
    ambit_examples::run_main("ambit-waypoint", run(args))
}

async fn run(args: Args) -> Result<()> {
    let env = ZtunnelEnv::from_process(args.config.as_deref())?;
    let td = TrustDomain::new(&args.trust_domain).context("--trust-domain")?;
    let sa = args.service_account.clone().unwrap_or(args.name.clone());
    let identity = td
        .workload_id(&args.namespace, &sa)
        .context("--namespace/--service-account do not form a SPIFFE id")?;
    let flags = CredentialFlags {
        ca_dir: args.ca_dir.clone(),
        cert_chain: args.cert_chain.clone(),
        key: args.key.clone(),
        root_cert: args.root_cert.clone(),
    };
    let credentials: Arc<dyn CredentialSource> = match &env.ca {
        Some(ca) if flags.ca_dir.is_none() && flags.cert_chain.is_none() => {
            // The waypoint's own identity, asked for with its own token: no impersonation.
            Arc::new(IstioCaClient::new(
                ca.clone(),
                td.clone(),
                env.secret_ttl,
                false,
            ))
        }
        _ => ambit_examples::credentials(td, &flags)?,
    };
    let state = match &args.config {
        Some(c) => ambit_state::local::load_file(c)?.state,
        None => ambit_state::State::new(),
    };
    let l7 = load_l7(&args.l7, &args.root_namespace)?;
    let mut config = WaypointConfig::new(&args.name, &args.namespace, identity.clone());
    config.hbone = listen_addr("hbone", &args.hbone)?.context("--hbone cannot be off")?;
    config.metrics = listen_addr("metrics", &args.metrics)?;
    config.readiness = listen_addr("readiness", &args.readiness)?;
    config.json_access_log = args.log_format == ambit_examples::logging::LogFormat::Json;
    config.exporter = ambit_examples::otlp::otlp_from_env("ambit-waypoint")?;
    if let Some(f) = &args.jwks_ca {
        config.jwks_ca_pem = Some(
            std::fs::read_to_string(f).with_context(|| format!("{}: cannot read", f.display()))?,
        );
    }
    if let Some(x) = &env.xds {
        config
            .readiness_gates
            .push(ambit_examples::xds_gate(&x.address));
    }
    let waypoint = Waypoint::start(
        config,
        state.clone(),
        l7,
        credentials,
        TlsContext::new(Provider::default()),
    )
    .await
    .context("starting the waypoint")?;
    if let Some(control) = env.xds.clone() {
        follow_xds(
            &waypoint,
            XdsConfig {
                control,
                node: env.node(),
            },
            state,
        );
    }
    info!(%identity, listening = %waypoint.bound(), xds = env.xds.is_some(), "ambit-waypoint ready");

    let mut files = args.l7.clone();
    // With xDS the local config is read once, as ztunnel does; without, it is followed.
    let local = args.config.clone().filter(|_| env.xds.is_none());
    files.extend(local.clone());
    let mut watch = FileWatch::new(files, Duration::from_secs(args.reload_secs));
    while ambit_examples::changed_or_interrupted(&mut watch).await {
        if let Some(c) = &local {
            match ambit_state::local::load_file(c) {
                Ok(cfg) => waypoint.update_state(cfg.state),
                Err(e) => error!("mesh state not reloaded, keeping the last good one: {e}"),
            }
        }
        match load_l7(&args.l7, &args.root_namespace) {
            Ok(l7) => {
                waypoint.update_l7(l7);
                info!("routes and policies reloaded");
            }
            Err(e) => error!("routes and policies not reloaded, keeping the last good ones: {e:#}"),
        }
    }
    info!("shutting down: draining for up to 5 s");
    waypoint.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Runs the xDS client into the waypoint's mesh state; readiness holds [`ambit_examples::XDS_GATE`] (set in
/// the config, before anything binds) until the first sync is applied.
fn follow_xds(waypoint: &Waypoint, config: XdsConfig, initial: ambit_state::State) {
    let updater = waypoint.state_updater();
    let client = AdsClient::new(config, initial, Box::new(move |s| updater.update(s)));
    let mut synced = client.synced();
    let readiness = waypoint.readiness().clone();
    tokio::spawn(async move {
        if synced.wait_for(|s| *s).await.is_ok() {
            readiness.unblock(ambit_examples::XDS_GATE);
        }
    });
    tokio::spawn(client.run());
}

/// All L7 files as one config (warnings logged); an error names the file it is in.
fn load_l7(files: &[PathBuf], root: &str) -> Result<L7Config> {
    let mut texts = Vec::with_capacity(files.len());
    for f in files {
        let t =
            std::fs::read_to_string(f).with_context(|| format!("{}: cannot read", f.display()))?;
        texts.push((t, f.display().to_string()));
    }
    let sources: Vec<(&str, &str)> = texts
        .iter()
        .map(|(t, f)| (t.as_str(), f.as_str()))
        .collect();
    let (l7, warnings) = L7Config::from_files(&sources, root)?;
    for w in warnings {
        warn!("{w}");
    }
    Ok(l7)
}
