//! Pieces shared by ambit's example daemons: credentials from their flags, the reload loop's
//! wait, running and logging. The daemons are thin: the proxies, the file watch, the demo's
//! applications and its SOCKS5 client come from the library crates.
#![forbid(unsafe_code)]

pub mod graph;
pub mod logging;
pub mod otlp;

pub use ambit_proxy::FileWatch;
pub use ambit_test_util::apps::{http_get, http_hello, tcp_echo};
pub use ambit_test_util::socks5::{SocksError, SocksTarget, socks5_connect};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ambit_identity::{
    CaFiles, CaSource, CertificateAuthority, CredentialSource, PemFileSource, TrustDomain,
};

use anyhow::{Context, Result};

/// Where a daemon's certificates come from, as its flags say.
#[derive(Debug, Clone, Default)]
pub struct CredentialFlags {
    /// A CA directory made by `ambitctl ca init`.
    pub ca_dir: Option<PathBuf>,
    /// A PEM chain, with `key` and `root_cert`.
    pub cert_chain: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// PEM trust bundle.
    pub root_cert: Option<PathBuf>,
}

/// The credential source the flags select: a CA directory, PEM files (re-read on change), or,
/// with neither, an ephemeral built-in CA (demo only).
pub fn credentials(td: TrustDomain, flags: &CredentialFlags) -> Result<Arc<dyn CredentialSource>> {
    match (&flags.ca_dir, &flags.cert_chain) {
        (Some(dir), _) => {
            let files = CaFiles::read_dir(dir)?;
            let ca = CertificateAuthority::from_files(&files, Some(td))
                .with_context(|| format!("loading the CA in {}", dir.display()))?;
            Ok(Arc::new(CaSource::with_default_ttl(Arc::new(ca))))
        }
        (None, Some(chain)) => {
            let (Some(key), Some(root)) = (&flags.key, &flags.root_cert) else {
                anyhow::bail!("--cert-chain needs --key and --root-cert");
            };
            Ok(Arc::new(PemFileSource::new(chain, key, root)))
        }
        (None, None) => {
            tracing::warn!(
                "no --ca-dir or --cert-chain: using an ephemeral built-in CA (demo only; other nodes will not trust it)"
            );
            let ca = CertificateAuthority::new(td)?;
            Ok(Arc::new(CaSource::with_default_ttl(Arc::new(ca))))
        }
    }
}

/// `ip:port`, or `None` for "off".
pub fn listen_addr(flag: &str, v: &str) -> Result<Option<SocketAddr>> {
    if v == "off" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .with_context(|| format!("--{flag} {v:?}: expected ip:port or \"off\""))
}

/// Waits until a watched file's content changes (`true`) or a shutdown signal arrives
/// (`false`): the loop condition of every daemon's reload loop.
pub async fn changed_or_interrupted(watch: &mut FileWatch) -> bool {
    tokio::select! {
        () = watch.changed() => true,
        () = shutdown_signal() => false,
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (the kubelet's stop): when a daemon starts draining.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch for SIGTERM; only Ctrl-C stops"),
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The readiness gate a daemon holds from start until its first xDS sync is in force.
pub const XDS_GATE: &str = "xds";

/// The `(name, detail)` readiness gate for a daemon following the control plane at `address`
/// (its config's `readiness_gates`, so no probe sees 200 before the first sync).
pub fn xds_gate(address: impl std::fmt::Display) -> (String, String) {
    (
        XDS_GATE.to_owned(),
        format!("waiting for the first sync from {address}"),
    )
}

/// Runs a daemon's async main on a multi-threaded runtime (a worker per CPU); errors print
/// as `name: error` (with causes) and exit 1.
pub fn run_main(
    name: &str,
    main: impl std::future::Future<Output = Result<()>>,
) -> std::process::ExitCode {
    run_main_on(name, None, main)
}

/// As [`run_main`], with `workers` worker threads (`None`: one per CPU).
pub fn run_main_on(
    name: &str,
    workers: Option<std::num::NonZeroUsize>,
    main: impl std::future::Future<Output = Result<()>>,
) -> std::process::ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n.get());
    }
    let result = builder
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .and_then(|rt| rt.block_on(main));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr as text; `RUST_LOG` picks levels (default `default`). See [`logging`].
pub fn init_logging(default: &str) {
    logging::init_logging_as(logging::LogFormat::Text, default);
}
