//! Pieces shared by ambit's example daemons: a SOCKS5 client (how the demo's applications use
//! their node proxy), tiny demo applications, and logging setup.
#![forbid(unsafe_code)]

pub use ambit_test_util::socks5::{SocksError, Target, socks5_connect};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ambit_identity::{
    CaFiles, CaSource, CertificateAuthority, CredentialSource, PemFileSource, SystemClock,
    TrustDomain,
};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A minimal HTTP/1.1 GET over an open stream; returns (status, body).
pub async fn http_get(s: &mut TcpStream, host: &str, path: &str) -> Result<(u16, String)> {
    http_get_with(s, host, path, &[]).await
}

/// [`http_get`] with extra request headers.
pub async fn http_get_with(
    s: &mut TcpStream,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut raw))
        .await
        .context("HTTP response timed out")??;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP response")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A demo HTTP application on `addr` that answers `hello from <name>`.
pub async fn spawn_http_app(addr: SocketAddr, name: &'static str) -> Result<()> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("demo app {name} on {addr}"))?;
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                    if head.len() > 16 * 1024 {
                        return;
                    }
                }
                let body = format!("hello from {name} (connection from {})\n", peer.ip());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Ok(())
}

/// A demo TCP echo application on `addr`.
pub async fn spawn_echo_app(addr: SocketAddr) -> Result<()> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("demo echo app on {addr}"))?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Ok(())
}

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
    let day = Duration::from_secs(24 * 3600);
    match (&flags.ca_dir, &flags.cert_chain) {
        (Some(dir), _) => {
            let read = |f: &str| -> Result<String> {
                let p: &Path = dir;
                std::fs::read_to_string(p.join(f))
                    .with_context(|| format!("{}: cannot read", p.join(f).display()))
            };
            let mut files = CaFiles::default();
            files.ca_cert = read("ca-cert.pem")?;
            files.ca_key = read("ca-key.pem")?;
            files.cert_chain = read("cert-chain.pem")?;
            files.root_cert = read("root-cert.pem")?;
            let ca = CertificateAuthority::from_files(&files, Some(td))
                .with_context(|| format!("loading the CA in {}", dir.display()))?;
            Ok(Arc::new(CaSource::new(
                Arc::new(ca),
                day,
                Arc::new(SystemClock),
            )))
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
            Ok(Arc::new(CaSource::new(
                Arc::new(ca),
                day,
                Arc::new(SystemClock),
            )))
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

/// Watches config files by content (small files; atomic renames included) for a daemon's reload
/// loop, and Ctrl-C for its shutdown.
#[derive(Debug)]
pub struct FileWatch {
    files: Vec<PathBuf>,
    last: Vec<Option<Vec<u8>>>,
    tick: tokio::time::Interval,
}

impl FileWatch {
    /// Watches `files`, checking every `every` (at least a second).
    pub fn new(files: Vec<PathBuf>, every: Duration) -> Self {
        let last = Self::read(&files);
        Self {
            files,
            last,
            tick: tokio::time::interval(every.max(Duration::from_secs(1))),
        }
    }

    /// Waits until a file's content changes (`true`) or Ctrl-C arrives (`false`).
    pub async fn changed(&mut self) -> bool {
        loop {
            tokio::select! {
                _ = self.tick.tick() => {}
                _ = tokio::signal::ctrl_c() => return false,
            }
            let now = Self::read(&self.files);
            if now != self.last {
                self.last = now;
                return true;
            }
        }
    }

    fn read(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
        files.iter().map(|f| std::fs::read(f).ok()).collect()
    }
}

/// Runs a daemon's async main on a multi-threaded runtime; errors print as `name: error`
/// (with causes) and exit 1.
pub fn run_main(
    name: &str,
    main: impl std::future::Future<Output = Result<()>>,
) -> std::process::ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
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

/// Logs to stderr; `RUST_LOG` picks levels (default `info` or `warn`), `json` for JSON lines.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
