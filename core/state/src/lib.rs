//! Istio workload-API state for ambit: [`Workload`], [`Service`] and policies in a [`State`]
//! store with the lookups a node proxy needs (by address, VIP, hostname, uid), and ztunnel's
//! local YAML config ([`local`]), so that every config source — a file, the Rust/C/Python APIs
//! and later an xDS control plane — fills the same store.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod local;
mod state;
mod types;

pub use local::LoadedConfig;
pub use state::State;
pub use types::{
    GatewayAddress, GatewayDestination, Service, TunnelProtocol, Workload, WorkloadType,
};
