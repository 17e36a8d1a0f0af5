//! Accepting that survives. An accept loop that ends on its first error is a listener that
//! silently dies: one moment of `EMFILE` (out of descriptors) would stop SOCKS5, capture or the
//! admin endpoints for good. [`accept`] never fails: when the process or the system is out of a
//! resource it waits and tries again, backing off up to a second, logging once per burst and
//! counting every failure in `ambit_accept_errors_total{listener,kind}`.

use std::net::SocketAddr;
use std::time::Duration;

use ambit_telemetry::{LabeledFamily, Metrics};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

const BACKOFF_START: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The `ambit_accept_errors_total` family of `metrics`.
pub fn accept_errors(metrics: &Metrics) -> LabeledFamily {
    metrics.counter(
        "ambit_accept_errors_total",
        "Failed accepts by listener and error; the listener keeps serving.",
        &["listener", "kind"],
    )
}

/// The next connection on `listener` (named `what` in logs and metrics), however many accepts
/// fail first.
pub async fn accept(
    listener: &TcpListener,
    what: &'static str,
    errors: &LabeledFamily,
) -> (TcpStream, SocketAddr) {
    let mut backoff = BACKOFF_START;
    let mut burst = 0u64;
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                if burst > 0 {
                    info!(listener = what, failed = burst, "accepting again");
                }
                return accepted;
            }
            Err(e) => {
                errors.inc(&[what, kind_of(&e)]);
                if burst == 0 {
                    warn!(listener = what, error = %e, "accept failed; retrying (logged once until it works again)");
                }
                burst += 1;
                // An aborted handshake is the client's; anything else waits before the retry,
                // so a persistent error cannot spin a core.
                if e.raw_os_error() != Some(ECONNABORTED) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
const ENOBUFS: i32 = 105;
const ENOMEM: i32 = 12;
const ECONNABORTED: i32 = 103;

/// The metric label of an accept error.
fn kind_of(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(EMFILE) => "EMFILE",
        Some(ENFILE) => "ENFILE",
        Some(ENOBUFS) => "ENOBUFS",
        Some(ENOMEM) => "ENOMEM",
        Some(ECONNABORTED) => "ECONNABORTED",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_labelled_by_errno() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert_eq!(kind_of(&e(24)), "EMFILE");
        assert_eq!(kind_of(&e(23)), "ENFILE");
        assert_eq!(kind_of(&e(105)), "ENOBUFS");
        assert_eq!(kind_of(&e(103)), "ECONNABORTED");
        assert_eq!(kind_of(&e(1)), "other");
    }
}
