//! The generated protobuf messages and gRPC clients, one module per proto package (the layout
//! prost's cross-package paths expect). Field numbers and names are Istio's and Envoy's public
//! wire contract; the `.proto` files are the project's own (`proto/README.md`).
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
#![allow(
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links
)]

/// Istio's APIs.
pub mod istio {
    /// `istio.workload`: the workload API (`Address` = `Workload` | `Service`).
    pub mod workload {
        include!(concat!(env!("OUT_DIR"), "/istio.workload.rs"));
        /// `istio.workload.zds`: the node agent's pod announcements.
        pub mod zds {
            include!(concat!(env!("OUT_DIR"), "/istio.workload.zds.rs"));
        }
    }
    /// `istio.security`: L4 `Authorization`.
    pub mod security {
        include!(concat!(env!("OUT_DIR"), "/istio.security.rs"));
    }
    /// `istio.v1.auth`: the Istio CA.
    pub mod v1 {
        /// `istio.v1.auth`.
        pub mod auth {
            include!(concat!(env!("OUT_DIR"), "/istio.v1.auth.rs"));
        }
    }
}

/// Envoy's xDS transport.
pub mod envoy {
    /// `envoy.config`.
    pub mod config {
        /// `envoy.config.core`.
        pub mod core {
            /// `envoy.config.core.v3`: `Node`.
            pub mod v3 {
                include!(concat!(env!("OUT_DIR"), "/envoy.config.core.v3.rs"));
            }
        }
    }
    /// `envoy.service`.
    pub mod service {
        /// `envoy.service.discovery`.
        pub mod discovery {
            /// `envoy.service.discovery.v3`: delta ADS.
            pub mod v3 {
                include!(concat!(env!("OUT_DIR"), "/envoy.service.discovery.v3.rs"));
            }
        }
    }
}

/// Google's shared types.
pub mod google {
    /// `google.rpc`: `Status`.
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}
