//! ambit: an embeddable service-mesh data plane, wire-compatible with Istio's ambient mode.
//!
//! This facade is the one crate a host needs: the building blocks are re-exported by concern,
//! and [`Error`] wraps their errors behind predicates so that new failure kinds never break a
//! caller. The C ABI (`ambit-ffi`) and the Python package are thin layers over this crate.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the YAML guard, the multi-document reader, [`config::ConfigError`] and warnings |
//! | [`identity`] | SPIFFE ids, trust bundles, chain verification, built-in CA, rotation |
//! | [`tls`] | rustls configs for HBONE mutual TLS |
//! | [`hbone`] | HBONE client (pooled), server, tunnels, header and PROXY v2 codecs |
//! | [`authz`] | Istio authorization: L4 (node proxy) and L7 (waypoint: [`authz::L7Policies`]) |
//! | [`authn`] | JWT `RequestAuthentication` ([`authn::Authenticators`]) |
//! | [`route`] | Gateway API `HTTPRoute`: [`route::RouteTable`] decides each request's [`route::Outcome`] |
//! | [`state`] | workload/service state and ztunnel's local config |
//! | [`telemetry`] | Istio metrics and access logs |
//! | [`proxy`] | what both proxies share (admin endpoints, credentials, file watching) |
//! | [`node`] | the node proxy ([`node::NodeProxy`]) |
//! | [`waypoint`] | the waypoint ([`waypoint::Waypoint`], with [`waypoint::L7Config`]) |
//! | [`run`] | both proxies started from configuration text and a CA, as the C ABI and Python do |
//!
//! ```
//! let bad = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
//!            metadata: {name: r, namespace: s}\nspec: {rules: [{matches: [{path: {type: Nope}}]}]}\n";
//! let e = ambit::Error::from(ambit::route::RouteTable::parse(bad, "r.yaml").unwrap_err());
//! assert!(e.is_config());
//! let at = e.location().expect("config errors say where");
//! assert_eq!((at.file, at.object, at.field), ("r.yaml", "HTTPRoute s/r", "spec.rules[0].matches[0].path.type"));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

pub mod run;

pub use ambit_authn as authn;
pub use ambit_authz as authz;
pub use ambit_config as config;
pub use ambit_hbone as hbone;
pub use ambit_identity as identity;
pub use ambit_node as node;
pub use ambit_proxy as proxy;
pub use ambit_route as route;
pub use ambit_state as state;
pub use ambit_telemetry as telemetry;
pub use ambit_tls as tls;
pub use ambit_waypoint as waypoint;
/// The `http` crate, whose header maps and methods the route, authn and authz engines take.
pub use http;

/// Any ambit failure. The `Display` text is for people and may change; branch on the
/// predicates instead.
pub struct Error {
    kind: Kind,
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where in a configuration an error was found (see [`Error::location`]). Empty strings mean
/// "not known" (no file name was given; the whole object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Location<'a> {
    /// The file name the caller gave.
    pub file: &'a str,
    /// The object: `Kind namespace/name`, `workloads[2] (shop/web)`, `document N`.
    pub object: &'a str,
    /// The field path in the object.
    pub field: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Identity,
    Tls,
    Tunnel,
    Config,
    Proxy,
}

impl Error {
    /// A SPIFFE id, certificate or credential problem.
    pub fn is_identity(&self) -> bool {
        self.kind == Kind::Identity
    }

    /// A TLS configuration or handshake problem.
    pub fn is_tls(&self) -> bool {
        self.kind == Kind::Tls
    }

    /// An HBONE tunnel could not be opened.
    pub fn is_tunnel(&self) -> bool {
        self.kind == Kind::Tunnel
    }

    /// Configuration (YAML, policy, routes, a JWKS) was refused.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }

    /// A proxy could not start.
    pub fn is_proxy(&self) -> bool {
        self.kind == Kind::Proxy
    }

    /// Whether authorization refused a tunnel.
    pub fn is_denied(&self) -> bool {
        self.source
            .downcast_ref::<hbone::HboneError>()
            .is_some_and(hbone::HboneError::is_denied)
    }

    /// The HTTP status a peer refused a tunnel with.
    pub fn status(&self) -> Option<u16> {
        self.source
            .downcast_ref::<hbone::HboneError>()
            .and_then(hbone::HboneError::status)
            .map(|s| s.as_u16())
    }

    /// Where a configuration error is: the file, the object in it and the field of that
    /// object, as every ambit loader reports them. `None` for other kinds of error.
    pub fn location(&self) -> Option<Location<'_>> {
        self.source
            .downcast_ref::<config::ConfigError>()
            .map(|e| Location {
                file: &e.file,
                object: &e.object,
                field: &e.field,
            })
    }

    /// The underlying error of a given type, if that is what it is.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref::<E>()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

macro_rules! from_errors {
    ($($kind:ident: $($ty:ty),+;)+) => {
        $($(
            impl From<$ty> for Error {
                fn from(e: $ty) -> Self {
                    Self { kind: Kind::$kind, source: Box::new(e) }
                }
            }
        )+)+
    };
}

from_errors! {
    Identity: identity::SpiffeIdError, identity::VerifyError, identity::CaError,
        identity::CredentialError, identity::SvidError;
    Tls: tls::TlsError;
    Tunnel: hbone::HboneError;
    Config: config::ConfigError, authn::JwksError;
    Proxy: proxy::ProxyError;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waypoint_config_errors_are_config_errors() {
        let bad_route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
                         metadata: {name: r, namespace: s}\nspec: {rules: [{matches: [{path: {type: Nope}}]}]}\n";
        let e = Error::from(route::RouteTable::parse(bad_route, "r.yaml").expect_err("refused"));
        assert!(e.is_config() && !e.is_proxy(), "{e:?}");
        let field = e
            .downcast_ref::<config::ConfigError>()
            .map(|l| l.field.as_str());
        assert_eq!(field, Some("spec.rules[0].matches[0].path.type"));

        let e = Error::from(
            waypoint::L7Config::from_yaml("kind: [", "l7.yaml", "istio-system")
                .expect_err("refused"),
        );
        assert!(e.is_config(), "{e:?}");
        assert!(e.to_string().starts_with("l7.yaml: "), "{e}");

        let (authn, _) = authn::Authenticators::parse("", "a.yaml", "istio-system").expect("empty");
        let e = Error::from(
            authn
                .set_jwks("https://nowhere/jwks", "{}")
                .expect_err("unknown"),
        );
        assert!(e.is_config(), "{e:?}");
        assert_eq!(e.location(), None, "a JWKS error has no place in a file");
    }
}
