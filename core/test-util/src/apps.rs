//! Small applications for a mesh to carry: a TCP echo and an HTTP/1.1 hello, each serving
//! until its task is aborted (or the runtime ends).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A TCP echo on `addr`: every byte back, and the client's half-close passed on as its own.
pub async fn tcp_echo(addr: SocketAddr) -> std::io::Result<JoinHandle<()>> {
    let l = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    }))
}

/// A UDP echo on `addr`: each datagram back to its sender, prefixed with the sender's
/// address and `|` (so a test sees where the mesh delivered it from).
pub async fn udp_echo(addr: SocketAddr) -> std::io::Result<JoinHandle<()>> {
    let socket = tokio::net::UdpSocket::bind(addr).await?;
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let mut reply = format!("{}|", from.ip()).into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = socket.send_to(&reply, from).await;
        }
    }))
}

/// An HTTP/1.1 application on `addr` that answers every request `200` with the body
/// `hello from <name> (connection from <peer ip>)\n` and closes.
pub async fn http_hello(addr: SocketAddr, name: &'static str) -> std::io::Result<JoinHandle<()>> {
    let l = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
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
    }))
}

/// Writes `msg` and reads back as many bytes (an echo round trip), within 30 s.
pub async fn echo_through<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    msg: &[u8],
) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut back))
        .await
        .map_err(|_| std::io::Error::other("echo timed out"))??;
    Ok(back)
}

/// A minimal HTTP/1.1 GET (`Connection: close`) with extra `headers` over an open stream;
/// the status and the body, read to the end (within 15 s).
pub async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("HTTP response timed out"))??;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
