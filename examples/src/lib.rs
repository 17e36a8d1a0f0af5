//! Pieces shared by ambit's example daemons: a SOCKS5 client (how the demo's applications use
//! their node proxy), tiny demo applications, and logging setup.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Where a SOCKS5 CONNECT should go.
#[derive(Debug, Clone)]
pub enum Target {
    /// An address.
    Addr(SocketAddr),
    /// A host name (resolved by the proxy) and port.
    Host(String, u16),
}

/// Why a SOCKS5 CONNECT failed: the proxy's reply code (RFC 1928), or a transport error.
#[derive(Debug)]
pub enum SocksError {
    /// The proxy refused with this reply code (2 = not allowed by policy).
    Refused(u8),
    /// The proxy could not be talked to.
    Io(anyhow::Error),
}

/// Opens a SOCKS5 CONNECT through `proxy`, from local address `from` (how a node proxy knows
/// which workload is asking).
pub async fn socks5_connect(
    proxy: SocketAddr,
    from: IpAddr,
    target: &Target,
) -> Result<TcpStream, SocksError> {
    let io = |e: std::io::Error| SocksError::Io(e.into());
    let socket = if from.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io)?;
    socket.bind(SocketAddr::new(from, 0)).map_err(io)?;
    let mut s = socket.connect(proxy).await.map_err(io)?;
    s.write_all(&[5, 1, 0]).await.map_err(io)?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await.map_err(io)?;
    if r != [5, 0] {
        return Err(SocksError::Io(anyhow::anyhow!(
            "proxy refused the SOCKS5 greeting"
        )));
    }
    let mut req = vec![5, 1, 0];
    let port = match target {
        Target::Addr(a) => {
            match a.ip() {
                IpAddr::V4(v4) => {
                    req.push(1);
                    req.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    req.push(4);
                    req.extend_from_slice(&v6.octets());
                }
            }
            a.port()
        }
        Target::Host(h, p) => {
            let len = u8::try_from(h.len())
                .map_err(|_| SocksError::Io(anyhow::anyhow!("host name too long")))?;
            req.push(3);
            req.push(len);
            req.extend_from_slice(h.as_bytes());
            *p
        }
    };
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.map_err(io)?;
    let mut rep = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(15), s.read_exact(&mut rep))
        .await
        .map_err(|_| SocksError::Io(anyhow::anyhow!("no SOCKS5 reply in 15 s")))?
        .map_err(io)?;
    match rep[1] {
        0 => Ok(s),
        code => Err(SocksError::Refused(code)),
    }
}

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
