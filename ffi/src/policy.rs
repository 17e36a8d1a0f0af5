//! L4 authorization decisions over Istio policy YAML.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use facade::authz::{Connection, IstioPolicies, PolicySet, PolicyTarget};
use facade::identity::SpiffeId;

use crate::error::{ambit_error, ambit_result, give_loaded};
use crate::macros::{
    Castable, OwnershipArc, OwnershipRef, ffi_panic_boundary, free_arc, to_arc_const_ptr, try_from,
    try_out, try_ref_from_ptr, try_slice, try_str, write_out,
};

/// A compiled set of authorization policies.
///
/// Immutable and thread-safe after construction: evaluate from any thread at once.
/// Corresponds to `Arc<PolicySet>`; release with `ambit_policy_set_free`.
#[derive(Debug)]
pub struct ambit_policy_set {
    _private: [u8; 0],
}

impl Castable for ambit_policy_set {
    type Ownership = OwnershipArc;
    type RustType = PolicySet;
}

/// A workload label (`key=value`), borrowed for the duration of a call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ambit_label {
    /// Key bytes (UTF-8).
    pub key: *const u8,
    /// Key length.
    pub key_len: usize,
    /// Value bytes (UTF-8).
    pub value: *const u8,
    /// Value length.
    pub value_len: usize,
}

impl Castable for ambit_l4_attributes {
    type Ownership = OwnershipRef;
    type RustType = ambit_l4_attributes;
}

/// What L4 policy sees of one connection, borrowed for the duration of a call. Strings are
/// UTF-8 with explicit lengths.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ambit_l4_attributes {
    /// Namespace of the destination workload.
    pub destination_namespace: *const u8,
    /// Its length.
    pub destination_namespace_len: usize,
    /// Labels of the destination workload (for `selector` policies); may be NULL if 0.
    pub destination_labels: *const ambit_label,
    /// Number of labels.
    pub destination_labels_len: usize,
    /// The client's verified SPIFFE id (`spiffe://td/ns/x/sa/y` or `td/ns/x/sa/y`); length 0
    /// for a plaintext connection with no identity.
    pub source_principal: *const u8,
    /// Its length.
    pub source_principal_len: usize,
    /// The client's IP, as text.
    pub source_ip: *const u8,
    /// Its length.
    pub source_ip_len: usize,
    /// The destination workload IP, as text.
    pub destination_ip: *const u8,
    /// Its length.
    pub destination_ip_len: usize,
    /// The destination target port.
    pub destination_port: u16,
}

/// Builds a policy set from Istio `AuthorizationPolicy` / `PeerAuthentication` YAML
/// (multi-document; root namespace `istio-system`). On success `*set_out` gets a new set. On
/// `AMBIT_RESULT_CONFIG_INVALID`, `*err_out` (if non-NULL) names the object and field.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_policy_set_from_istio_yaml(
    yaml: *const u8,
    yaml_len: usize,
    set_out: *mut *const ambit_policy_set,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let text = try_str!(yaml, yaml_len);
        let set_out = try_out!(set_out);
        let mut set = PolicySet::new();
        let loaded = IstioPolicies::parse(text, "<config>", set.root_namespace()).map(|loaded| {
            loaded.apply_to(&mut set);
            set
        });
        // SAFETY: `set_out` checked non-NULL; `err_out` NULL or writable per the contract.
        unsafe { give_loaded(loaded, set_out, err_out) }
    })
}

/// Number of authorization policies in the set (0 for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_policy_set_len(set: *const ambit_policy_set) -> usize {
    ffi_panic_boundary!(0, {
        // SAFETY: NULL, or a set from `ambit_policy_set_from_istio_yaml` (an Arc that the
        // caller has not freed yet).
        unsafe { try_from(set) }.map_or(0, PolicySet::len)
    })
}

/// Decides one connection: ztunnel's order (DENY match → deny; no ALLOW policy → allow; ALLOW
/// match → allow; else deny). Writes `*allowed_out` and copies the deciding policy
/// (`namespace/name`, empty when none decided) into `policy_buf` (`*policy_n` = length).
/// Thread-safe; no allocation visible to the caller.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_policy_set_evaluate_l4(
    set: *const ambit_policy_set,
    attrs: *const ambit_l4_attributes,
    allowed_out: *mut bool,
    policy_buf: *mut u8,
    policy_buf_len: usize,
    policy_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let set: &PolicySet = try_ref_from_ptr!(set);
        let a = try_ref_from_ptr!(attrs);
        let allowed_out = try_out!(allowed_out);
        let policy_n = try_out!(policy_n);
        let ns = try_str!(a.destination_namespace, a.destination_namespace_len);
        let principal = try_str!(a.source_principal, a.source_principal_len);
        let parse_ip = |p: *const u8, n: usize| -> Result<IpAddr, ambit_result> {
            // SAFETY: `n` readable bytes at a non-NULL `p`, per the struct's contract.
            let bytes = unsafe { crate::macros::try_slice_from(p, n) }
                .ok_or(ambit_result::AMBIT_RESULT_NULL_PARAMETER)?;
            let s = std::str::from_utf8(bytes)
                .map_err(|_| ambit_result::AMBIT_RESULT_INVALID_PARAMETER)?;
            s.parse()
                .map_err(|_| ambit_result::AMBIT_RESULT_INVALID_PARAMETER)
        };
        let source_ip = match parse_ip(a.source_ip, a.source_ip_len) {
            Ok(ip) => ip,
            Err(e) => return e,
        };
        let destination_ip = match parse_ip(a.destination_ip, a.destination_ip_len) {
            Ok(ip) => ip,
            Err(e) => return e,
        };
        let id = if principal.is_empty() {
            None
        } else {
            match SpiffeId::from_principal(principal) {
                Ok(id) => Some(id),
                Err(_) => return ambit_result::AMBIT_RESULT_INVALID_SPIFFE_ID,
            }
        };
        let mut labels = BTreeMap::new();
        let raw: &[ambit_label] = try_slice!(a.destination_labels, a.destination_labels_len);
        for l in raw {
            let k = try_slice!(l.key, l.key_len);
            let v = try_slice!(l.value, l.value_len);
            match (std::str::from_utf8(k), std::str::from_utf8(v)) {
                (Ok(k), Ok(v)) => labels.insert(k.to_owned(), v.to_owned()),
                _ => return ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
            };
        }
        let conn = Connection {
            source_id: id.as_ref(),
            source_ip,
            destination_ip,
            destination_port: a.destination_port,
        };
        let target = PolicyTarget {
            namespace: ns,
            labels: &labels,
            policy_keys: &[],
        };
        let d = set.evaluate(target, &conn);
        let policy = d.policy.unwrap_or_default();
        // SAFETY: `policy_n` checked non-NULL; buffer per the contract.
        let r = unsafe { write_out(policy.as_bytes(), policy_buf, policy_buf_len, policy_n) };
        if r == ambit_result::AMBIT_RESULT_OK {
            // SAFETY: `allowed_out` checked non-NULL and writable per the contract.
            unsafe { *allowed_out = d.allowed };
        }
        r
    })
}

/// Releases a policy set. NULL is a no-op. Evaluations running on other threads must have
/// returned; freeing twice is undefined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_policy_set_free(set: *const ambit_policy_set) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a set from `ambit_policy_set_from_istio_yaml` released once.
        unsafe { free_arc(set) }
    })
}

/// A parsed SPIFFE id, made once (per peer) and passed to `ambit_policy_set_decide`.
///
/// Immutable and thread-safe; corresponds to `Arc<SpiffeId>`.
#[derive(Debug)]
pub struct ambit_spiffe_id {
    _private: [u8; 0],
}

impl Castable for ambit_spiffe_id {
    type Ownership = OwnershipArc;
    type RustType = SpiffeId;
}

/// Parses a SPIFFE id (`spiffe://...` or the scheme-less principal form) into a handle.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_spiffe_id_new(
    id: *const u8,
    id_len: usize,
    out: *mut *const ambit_spiffe_id,
) -> ambit_result {
    ffi_panic_boundary!({
        let s = try_str!(id, id_len);
        let out = try_out!(out);
        match SpiffeId::from_principal(s) {
            Ok(id) => {
                // SAFETY: `out` checked non-NULL and writable per the contract.
                unsafe { *out = to_arc_const_ptr(Arc::new(id)) };
                ambit_result::AMBIT_RESULT_OK
            }
            Err(_) => ambit_result::AMBIT_RESULT_INVALID_SPIFFE_ID,
        }
    })
}

/// Releases a SPIFFE id handle. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_spiffe_id_free(id: *const ambit_spiffe_id) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a handle from `ambit_spiffe_id_new` released once.
        unsafe { free_arc(id) }
    })
}

/// The per-connection fast path: like `ambit_policy_set_evaluate_l4` but with the peer's id
/// already parsed (`source_id`, NULL for plaintext) and binary addresses (the destination's
/// port is the target port). No parsing and no allocation visible to the caller.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_policy_set_decide(
    set: *const ambit_policy_set,
    source_id: *const ambit_spiffe_id,
    source: *const crate::proxy_v2::ambit_socket_addr,
    destination: *const crate::proxy_v2::ambit_socket_addr,
    destination_namespace: *const u8,
    destination_namespace_len: usize,
    allowed_out: *mut bool,
    policy_buf: *mut u8,
    policy_buf_len: usize,
    policy_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let set: &PolicySet = try_ref_from_ptr!(set);
        let src = try_ref_from_ptr!(source);
        let dst = try_ref_from_ptr!(destination);
        let ns = try_str!(destination_namespace, destination_namespace_len);
        let allowed_out = try_out!(allowed_out);
        let policy_n = try_out!(policy_n);
        // SAFETY: NULL (plaintext), or a live handle from `ambit_spiffe_id_new`.
        let id: Option<&SpiffeId> = unsafe { try_from(source_id) };
        let (Some(s), Some(d)) = (src.to_rust(), dst.to_rust()) else {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        };
        let labels = BTreeMap::new();
        let conn = Connection {
            source_id: id,
            source_ip: s.ip(),
            destination_ip: d.ip(),
            destination_port: d.port(),
        };
        let d = set.evaluate(
            PolicyTarget {
                namespace: ns,
                labels: &labels,
                policy_keys: &[],
            },
            &conn,
        );
        let policy = d.policy.as_deref().unwrap_or_default();
        // SAFETY: `policy_n` checked non-NULL; buffer per the contract.
        let r = unsafe { write_out(policy.as_bytes(), policy_buf, policy_buf_len, policy_n) };
        if r == ambit_result::AMBIT_RESULT_OK {
            // SAFETY: `allowed_out` checked non-NULL and writable per the contract.
            unsafe { *allowed_out = d.allowed };
        }
        r
    })
}
