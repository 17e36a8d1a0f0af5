//! PeerAuthentication: which workloads require mutual TLS.

use std::collections::BTreeMap;

use crate::set::Labels;

/// Istio's mTLS modes. In ambient, DISABLE behaves as PERMISSIVE (it is not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MtlsMode {
    /// Inherit from the parent (namespace, then mesh).
    #[default]
    Unset,
    /// Plaintext accepted (not supported in ambient; treated as PERMISSIVE).
    Disable,
    /// Both mTLS and plaintext accepted.
    Permissive,
    /// Only mTLS: plaintext connections are denied.
    Strict,
}

/// One PeerAuthentication object.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerAuthentication {
    /// Name.
    pub name: String,
    /// Namespace (the root namespace makes it mesh-wide when it has no selector).
    pub namespace: String,
    /// `selector.matchLabels`; `None` applies to the whole namespace.
    pub selector: Option<Labels>,
    /// The workload-wide mode.
    pub mode: MtlsMode,
    /// Per-port modes (`portLevelMtls`, target ports), only meaningful with a selector.
    pub port_modes: BTreeMap<u16, MtlsMode>,
}
