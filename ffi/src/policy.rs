//! L4 authorization decisions over Istio policy YAML.

use std::collections::BTreeMap;

use facade::authz::{Connection, IstioPolicies, PolicySet, PolicyTarget};
use facade::identity::SpiffeId;

use crate::addr::ambit_socket_addr;
use crate::error::{ambit_error, ambit_result, give_loaded};
use crate::ffi::{
    Castable, OwnershipArc, OwnershipRef, ffi_panic_boundary, free_arc, try_ambit_str, try_from,
    try_out, try_ref_from_ptr, try_slice, write_out,
};
use crate::identity::ambit_spiffe_id;
use crate::strings::ambit_str;

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
    /// The key (UTF-8).
    pub key: ambit_str,
    /// The value (UTF-8).
    pub value: ambit_str,
}

impl Castable for ambit_l4_attributes {
    type Ownership = OwnershipRef;
    type RustType = ambit_l4_attributes;
}

/// What L4 policy sees of one connection, borrowed for the duration of a call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ambit_l4_attributes {
    /// Namespace of the destination workload.
    pub destination_namespace: ambit_str,
    /// Labels of the destination workload (for `selector` policies); may be NULL if 0.
    pub destination_labels: *const ambit_label,
    /// Number of labels.
    pub destination_labels_len: usize,
    /// The client's verified SPIFFE id (`spiffe://td/ns/x/sa/y` or `td/ns/x/sa/y`); empty for
    /// a plaintext connection with no identity.
    pub source_principal: ambit_str,
    /// The client's address (its port is not looked at).
    pub source: ambit_socket_addr,
    /// The destination workload's address, with the target port.
    pub destination: ambit_socket_addr,
}

/// Builds a policy set from Istio `AuthorizationPolicy` / `PeerAuthentication` YAML
/// (multi-document; root namespace `istio-system`). On success `*set_out` gets a new set. On
/// `AMBIT_RESULT_CONFIG_INVALID`, `*err_out` (if non-NULL) names the object and field.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_policy_set_from_istio_yaml(
    yaml: ambit_str,
    set_out: *mut *const ambit_policy_set,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let text = try_ambit_str!(yaml);
        let set_out = try_out!(set_out);
        let mut set = PolicySet::new();
        let loaded = IstioPolicies::parse(text, facade::run::POLICIES_TEXT, set.root_namespace())
            .map(|loaded| {
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
        let ns = try_ambit_str!(a.destination_namespace);
        let principal = try_ambit_str!(a.source_principal);
        let (Some(source), Some(destination)) = (a.source.to_rust(), a.destination.to_rust())
        else {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
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
            let k = try_ambit_str!(l.key);
            let v = try_ambit_str!(l.value);
            labels.insert(k.to_owned(), v.to_owned());
        }
        let conn = Connection {
            source_id: id.as_ref(),
            source_ip: source.ip(),
            destination_ip: destination.ip(),
            destination_port: destination.port(),
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

/// The per-connection fast path: like `ambit_policy_set_evaluate_l4` but with the peer's id
/// already parsed (`source_id`, NULL for plaintext) and binary addresses (the destination's
/// port is the target port). No parsing and no allocation visible to the caller.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_policy_set_decide(
    set: *const ambit_policy_set,
    source_id: *const ambit_spiffe_id,
    source: *const ambit_socket_addr,
    destination: *const ambit_socket_addr,
    destination_namespace: ambit_str,
    allowed_out: *mut bool,
    policy_buf: *mut u8,
    policy_buf_len: usize,
    policy_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let set: &PolicySet = try_ref_from_ptr!(set);
        let src = try_ref_from_ptr!(source);
        let dst = try_ref_from_ptr!(destination);
        let ns = try_ambit_str!(destination_namespace);
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
