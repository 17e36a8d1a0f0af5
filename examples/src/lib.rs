//! Pieces shared by ambit's example daemons: a SOCKS5 client (how the demo's applications use
//! their node proxy), tiny demo applications, and logging setup.
#![forbid(unsafe_code)]

pub use ambit_test_util::socks5::{SocksError, Target, socks5_connect};

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A minimal HTTP/1.1 GET over an open stream; returns (status, body).
pub async fn http_get(s: &mut TcpStream, host: &str, path: &str) -> Result<(u16, String)> {
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
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
