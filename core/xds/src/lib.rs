//! Istio's control-plane clients for ambit, so a node proxy or waypoint joins a real mesh:
//!
//! - [`AdsClient`]: delta ADS (`DeltaAggregatedResources`) for the workload API's
//!   `Address` (workloads and services) and `Authorization` types, applied to an
//!   [`ambit_state::State`] incrementally and published after each response.
//! - [`IstioCaClient`]: `CreateCertificate` with a CSR per identity, as a
//!   [`CredentialSource`](ambit_identity::CredentialSource).
//! - [`ControlPlane`]: the TLS + token + headers connection both use.
//! - [`convert`]: the messages → ambit's types, validated field by field.
//! - [`ZtunnelEnv`]: ztunnel's environment variables, with its defaults.
//!
//! ```
//! use ambit_xds::convert;
//! use ambit_xds::pb::istio::workload as wl;
//!
//! let pushed = wl::Workload {
//!     uid: "Kubernetes//Pod/shop/web-1".into(),
//!     name: "web-1".into(),
//!     namespace: "shop".into(),
//!     addresses: vec![vec![10, 0, 0, 5]],
//!     tunnel_protocol: wl::TunnelProtocol::Hbone as i32,
//!     ..Default::default()
//! };
//! let w = convert::workload(pushed)?;
//! assert_eq!(w.addresses, ["10.0.0.5".parse::<std::net::IpAddr>()?]);
//! assert_eq!(w.cluster_id, "Kubernetes"); // ztunnel's default
//!
//! let bad = wl::Workload { addresses: vec![vec![10, 0, 0]], ..Default::default() };
//! let e = convert::workload(bad).expect_err("3 address bytes");
//! assert_eq!(e.field, "addresses[0]");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod ads;
pub mod ca;
pub mod control;
pub mod convert;
pub mod env;
pub mod pb;

pub use ads::{
    ADDRESS_TYPE, AUTHORIZATION_TYPE, AdsClient, Applied, NodeInfo, Resources, StatusHandle,
    XdsConfig, XdsStatus,
};
pub use ca::{CaClientError, IstioCaClient};
pub use control::{ControlError, ControlPlane, RootCa, Token};
pub use env::{EnvError, ProxyMode, ZtunnelEnv};
