//! Istio workload-API state for ambit: [`Workload`], [`Service`] and policies in a [`State`]
//! store with the lookups a node proxy needs (by address, VIP, hostname, uid), and ztunnel's
//! local YAML config ([`local`]), so that every config source — a file, the Rust/C/Python APIs
//! and later an xDS control plane — fills the same store.
//!
//! ```
//! use std::net::IpAddr;
//!
//! let yaml = r#"
//! workloads:
//! - uid: shop/web-1
//!   name: web-1
//!   namespace: shop
//!   serviceAccount: web
//!   workloadIps: [10.0.0.5]
//!   services: {"shop/web.shop.svc.cluster.local": {80: 8080}}
//! services:
//! - {name: web, namespace: shop, hostname: web.shop.svc.cluster.local,
//!    vips: ["/10.96.0.10"], ports: {80: 8080}}
//! "#;
//! let loaded = ambit_state::local::parse(yaml, "config.yaml")?;
//! let state = loaded.state;
//! let vip: IpAddr = "10.96.0.10".parse()?;
//! let web = state.service_by_vip("", vip).expect("the VIP is known");
//! let endpoints = state.endpoints(web, 80);
//! assert_eq!(endpoints.len(), 1);
//! assert_eq!((endpoints[0].0.name.as_str(), endpoints[0].1), ("web-1", 8080));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod local;
mod state;
mod types;
mod vecmap;

pub use local::LoadedConfig;
pub use state::{State, StateError};
pub use types::{
    AppTunnelProtocol, ApplicationTunnel, GatewayAddress, GatewayDestination, HealthPolicy,
    IpFamilies, LbMode, LbScope, LoadBalancing, Locality, NetworkMode, Service, ServicePorts,
    TunnelProtocol, Visibility, Workload, WorkloadStatus, WorkloadType,
};
pub use vecmap::VecMap;
