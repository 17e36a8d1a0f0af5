//! What ambit's two proxies share: the node proxy (`ambit-node`, ztunnel's role) and the
//! waypoint (`ambit-waypoint`) are built from these pieces, so that neither depends on the other.
//!
//! - [`admin`]: the small HTTP/1.1 endpoints (metrics, readiness, config dump).
//! - [`accept`]: an accept that outlives `EMFILE` and friends, counted in a metric.
//! - [`Identities`]: live workload credentials on demand, renewed at half-life.
//! - [`labels_for`]: Istio's telemetry labels from what the state knows about both ends.
//! - [`pick`]: the weighted endpoint choice by `capacity`.
//! - [`Tasks`]: spawned tasks that stop when their owner is dropped.
//! - [`FileWatch`]: the content-based file watch behind every daemon's reload loop.
//! - [`size_between`]: the size band of a per-connection future.
//! - [`Readiness`]: what a proxy still waits for before `/healthz/ready` says 200.
//! - `otlp` (feature `otlp`): the OTLP exporter of spans and access logs.
//!
//! ```
//! use std::net::IpAddr;
//! use std::sync::Arc;
//! use ambit_state::Workload;
//!
//! let ip: IpAddr = "10.0.0.1".parse()?;
//! let mut heavy = Workload::new("a", "a", "shop", vec![ip]);
//! heavy.capacity = 3;
//! let endpoints = vec![(Arc::new(heavy), 8080)];
//! let (w, port) = ambit_proxy::pick(&endpoints).expect("one endpoint");
//! assert_eq!((w.name.as_str(), port), ("a", 8080));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accept;
pub mod admin;
mod identities;
mod labels;
#[cfg(feature = "otlp")]
pub mod otlp;
mod pick;
mod ready;
mod size;
mod tasks;
mod watch;

use std::net::SocketAddr;

pub use accept::{accept, accept_errors};
pub use identities::Identities;
pub use labels::labels_for;
pub use pick::{pick, random_u64};
pub use ready::Readiness;
pub use size::size_between;
pub use tasks::Tasks;
pub use watch::FileWatch;

/// Why a proxy (node proxy or waypoint) could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A listener could not be bound.
    #[error("cannot listen for {0} on {1}: {2}")]
    Bind(String, SocketAddr, std::io::Error),
    /// Credentials for a workload could not be obtained or loaded.
    #[error("credentials for {0}")]
    Credentials(String),
    /// A setting is unusable (the message names it).
    #[error("configuration: {0}")]
    Config(String),
}

/// Writes `name=addr` for each listener that is bound, comma-separated (`socks5=…,metrics=…`):
/// the `Display` of a proxy's bound addresses, for its ready line.
pub fn write_listeners(
    f: &mut std::fmt::Formatter<'_>,
    listeners: &[(&str, Option<SocketAddr>)],
) -> std::fmt::Result {
    let mut sep = "";
    for (name, addr) in listeners {
        if let Some(a) = addr {
            write!(f, "{sep}{name}={a}")?;
            sep = ",";
        }
    }
    Ok(())
}
