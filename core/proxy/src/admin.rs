//! The small HTTP/1.1 endpoints: readiness (`/healthz/ready`), metrics (`/metrics`,
//! `/stats/prometheus`) and admin (`/config_dump`). GET only; one request per connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambit_telemetry::LabeledFamily;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::debug;

/// A response: status, content type, body.
pub type Reply = (u16, &'static str, String);

/// Serves `route(path)` on `listener` (named `what` in logs and `errors`) until the task is
/// dropped; failed accepts are retried ([`crate::accept`]).
pub async fn serve<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    errors: LabeledFamily,
    route: Arc<F>,
) where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send,
{
    loop {
        let (mut s, peer) = crate::accept(&listener, what, &errors).await;
        let route = route.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            let head = tokio::time::timeout(Duration::from_secs(10), async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut chunk).await.ok()?;
                    if n == 0 || buf.len() > 16 * 1024 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Some(())
            })
            .await;
            let (status, ctype, body) = match head {
                Ok(Some(())) => {
                    let line = String::from_utf8_lossy(&buf);
                    let mut parts = line.split_whitespace();
                    match (parts.next(), parts.next()) {
                        (Some("GET"), Some(path)) => route(path.to_owned()).await,
                        _ => (405, "text/plain", "only GET is supported\n".to_owned()),
                    }
                }
                _ => (400, "text/plain", "bad request\n".to_owned()),
            };
            let reason = match status {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                503 => "Service Unavailable",
                _ => "Bad Request",
            };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = s.write_all(resp.as_bytes()).await {
                debug!(%peer, error = %e, "admin response not delivered");
            }
            let _ = s.shutdown().await;
        });
    }
}

/// Serves `/metrics` and `/stats/prometheus` on `addr` with the text `render` returns; returns
/// the bound address and the serving task.
pub async fn spawn_metrics<F>(
    addr: SocketAddr,
    errors: LabeledFamily,
    render: F,
) -> Result<(Option<SocketAddr>, tokio::task::JoinHandle<()>), crate::ProxyError>
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let l = bind("metrics", addr).await?;
    let bound = l.local_addr().ok();
    let render = Arc::new(render);
    let route = Arc::new(move |path: String| {
        let render = render.clone();
        async move {
            match path.split('?').next() {
                Some("/metrics" | "/stats/prometheus") => {
                    (200, "text/plain; version=0.0.4", render())
                }
                _ => (404, "text/plain", "not found\n".to_owned()),
            }
        }
    });
    Ok((bound, tokio::spawn(serve(l, "metrics", errors, route))))
}

/// Serves `/healthz/ready` on `addr`: 200 once nothing in `readiness` is pending, 503
/// naming what is until then.
pub async fn spawn_readiness(
    addr: SocketAddr,
    errors: LabeledFamily,
    readiness: Arc<crate::Readiness>,
) -> Result<(Option<SocketAddr>, tokio::task::JoinHandle<()>), crate::ProxyError> {
    let l = bind("readiness", addr).await?;
    let bound = l.local_addr().ok();
    let route = Arc::new(move |path: String| {
        let readiness = readiness.clone();
        async move {
            match path.as_str() {
                "/healthz/ready" => readiness.reply(),
                _ => (404, "text/plain", "not found\n".to_owned()),
            }
        }
    });
    Ok((bound, tokio::spawn(serve(l, "readiness", errors, route))))
}

/// Binds `addr` for an endpoint, naming it in the error.
pub async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, crate::ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| crate::ProxyError::Bind(what.to_owned(), addr, e))
}
