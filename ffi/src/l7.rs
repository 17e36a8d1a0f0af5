//! Istio `AuthorizationPolicy` as a waypoint enforces it (HTTP attributes), for hosts that run
//! their own HTTP stack.

use facade::authz::{HttpRequest, L7Policies, L7Reason, WaypointTarget};
use facade::identity::SpiffeId;

use crate::addr::ambit_socket_addr;
use crate::authn::AuthnResult;
use crate::error::{ambit_error, ambit_result, give_loaded, warning_lines};
use crate::ffi::{
    Castable, OwnershipArc, OwnershipRef, ffi_panic_boundary, free_arc, try_ambit_str, try_from,
    try_out, try_ref_from_ptr, write_out,
};
use crate::identity::ambit_spiffe_id;
use crate::strings::{ambit_header, ambit_str, header_map};

/// A compiled set of waypoint-side AuthorizationPolicies (attached with `targetRefs`).
///
/// Immutable and thread-safe: decide from any number of threads at once. Corresponds to
/// `Arc<L7Policies>`; release with `ambit_l7_policies_free`.
#[derive(Debug)]
pub struct ambit_l7_policies {
    _private: [u8; 0],
}

/// The waypoint a request passes through and the service it is for: what decides which
/// AuthorizationPolicies and RequestAuthentications apply (by their `targetRefs`). Borrowed for
/// the duration of a call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ambit_waypoint_target {
    /// The waypoint's namespace.
    pub waypoint_namespace: ambit_str,
    /// The waypoint's name (its Gateway resource).
    pub waypoint_name: ambit_str,
    /// The destination Service's (or ServiceEntry's) namespace; empty when the request is
    /// addressed to a workload directly.
    pub service_namespace: ambit_str,
    /// Its name; empty exactly when `service_namespace` is.
    pub service_name: ambit_str,
}

/// What L7 policy sees of one HTTP request, borrowed for the duration of a call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ambit_http_request {
    /// The peer's verified SPIFFE id (from HBONE mutual TLS), parsed once per connection with
    /// `ambit_spiffe_id_new`; NULL for plaintext.
    pub source_id: *const ambit_spiffe_id,
    /// The peer's address (`ipBlocks`, `source.ip`); the port is ignored.
    pub source: ambit_socket_addr,
    /// The original client address (from `X-Forwarded-For` or PROXY protocol), for
    /// `remoteIpBlocks`; family 0 means the same as `source`.
    pub remote: ambit_socket_addr,
    /// The address and port the client addressed (service VIP or workload IP).
    pub destination: ambit_socket_addr,
    /// `:authority` / `Host` as received (port included if the client sent one).
    pub host: ambit_str,
    /// The method as received.
    pub method: ambit_str,
    /// The request target as received (path and optional query; the query is ignored and the
    /// path normalized before matching).
    pub path: ambit_str,
    /// The request headers (may be NULL when `headers_len` is 0).
    pub headers: *const ambit_header,
    /// Number of headers.
    pub headers_len: usize,
    /// The request's JWT authentication from `ambit_authenticators_authenticate` (its
    /// principal and claims are used when AUTHENTICATED); NULL when there is none.
    pub authn: *const crate::authn::ambit_authn_result,
    /// The TLS SNI the client sent to the waypoint; empty for none.
    pub sni: ambit_str,
}

/// Why an L7 decision came out as it did.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ambit_l7_reason {
    /// A DENY policy matched.
    AMBIT_L7_REASON_DENIED_BY_POLICY = 0,
    /// A CUSTOM policy matched; external authorization is unsupported, so it denies.
    AMBIT_L7_REASON_DENIED_BY_CUSTOM = 1,
    /// ALLOW policies apply, but none matched: denied.
    AMBIT_L7_REASON_NO_ALLOW_MATCHED = 2,
    /// An ALLOW policy matched.
    AMBIT_L7_REASON_ALLOWED_BY_POLICY = 3,
    /// No ALLOW policy applies and no DENY matched: allowed.
    AMBIT_L7_REASON_NO_ALLOW_POLICIES = 4,
}

pub(crate) struct Policies {
    policies: L7Policies,
    warnings: String,
}

impl Castable for ambit_l7_policies {
    type Ownership = OwnershipArc;
    type RustType = Policies;
}

impl Castable for ambit_waypoint_target {
    type Ownership = OwnershipRef;
    type RustType = ambit_waypoint_target;
}

impl Castable for ambit_http_request {
    type Ownership = OwnershipRef;
    type RustType = ambit_http_request;
}

/// The Rust view of a target.
///
/// # Safety
/// The target's strings are readable for `'a`.
pub(crate) unsafe fn waypoint_target<'a>(
    t: &ambit_waypoint_target,
) -> Result<WaypointTarget<'a>, ambit_result> {
    // SAFETY: forwarded from this function's contract.
    let (namespace, name, service_ns, service_name) = unsafe {
        (
            t.waypoint_namespace.text()?,
            t.waypoint_name.text()?,
            t.service_namespace.optional_text()?,
            t.service_name.optional_text()?,
        )
    };
    let service = match (service_ns, service_name) {
        (Some(ns), Some(name)) => Some((ns, name)),
        (None, None) => None,
        _ => return Err(ambit_result::AMBIT_RESULT_INVALID_PARAMETER),
    };
    Ok(WaypointTarget {
        namespace,
        name,
        service,
    })
}

/// Loads the `AuthorizationPolicy` objects of an Istio YAML stream (RequestAuthentication and
/// PeerAuthentication are skipped silently, other kinds with a warning; root namespace
/// `istio-system`) into `*policies_out`. A malformed policy returns
/// `AMBIT_RESULT_CONFIG_INVALID` with an error naming it in `*err_out` (if non-NULL).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_l7_policies_from_yaml(
    yaml: ambit_str,
    policies_out: *mut *const ambit_l7_policies,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let text = try_ambit_str!(yaml);
        let out = try_out!(policies_out);
        let loaded = L7Policies::parse(
            text,
            facade::run::L7_TEXT,
            facade::authz::DEFAULT_ROOT_NAMESPACE,
        )
        .map(|(policies, warnings)| Policies {
            policies,
            warnings: warning_lines(&warnings),
        });
        // SAFETY: `out` checked non-NULL; `err_out` NULL or writable per the contract.
        unsafe { give_loaded(loaded, out, err_out) }
    })
}

/// Number of policies that apply to some waypoint (0 for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_l7_policies_len(policies: *const ambit_l7_policies) -> usize {
    ffi_panic_boundary!(0, {
        // SAFETY: NULL, or live policies from `ambit_l7_policies_from_yaml`.
        unsafe { try_from(policies) }.map_or(0, |p: &Policies| p.policies.len())
    })
}

/// The load warnings, one per line (empty when none), into `buf`; `*out_n` gets the length or
/// the size needed.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_l7_policies_warnings(
    policies: *const ambit_l7_policies,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let p: &Policies = try_ref_from_ptr!(policies);
        let out_n = try_out!(out_n);
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(p.warnings.as_bytes(), buf, len, out_n) }
    })
}

/// Decides one request through `target`, in Istio's order (CUSTOM or DENY match → deny; no
/// ALLOW policy → allow; ALLOW match → allow; else deny). Writes `*allowed_out` (a denied
/// request is answered with 403), `*reason_out`, and the deciding policy (`namespace/name`,
/// empty when none decided) into `policy_buf` (`*policy_n` = length, or the size needed with
/// `AMBIT_RESULT_INSUFFICIENT_SIZE`). Thread-safe. Nothing is allocated when the request has
/// no headers and a normalized path; otherwise only the header map for the call.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_l7_policies_decide(
    policies: *const ambit_l7_policies,
    target: *const ambit_waypoint_target,
    request: *const ambit_http_request,
    allowed_out: *mut bool,
    reason_out: *mut ambit_l7_reason,
    policy_buf: *mut u8,
    policy_buf_len: usize,
    policy_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let p: &Policies = try_ref_from_ptr!(policies);
        let t = try_ref_from_ptr!(target);
        let r = try_ref_from_ptr!(request);
        let allowed_out = try_out!(allowed_out);
        let reason_out = try_out!(reason_out);
        let policy_n = try_out!(policy_n);
        // SAFETY: the target's strings are readable for the call (this function's contract).
        let target = match unsafe { waypoint_target(t) } {
            Ok(t) => t,
            Err(e) => return e,
        };
        let host = try_ambit_str!(r.host);
        let method = try_ambit_str!(r.method);
        let path = try_ambit_str!(r.path);
        // SAFETY: as above, for the request's strings.
        let sni = match unsafe { r.sni.optional_text() } {
            Ok(s) => s,
            Err(e) => return e,
        };
        // SAFETY: NULL (plaintext) or a live handle from `ambit_spiffe_id_new`.
        let source_id: Option<&SpiffeId> = unsafe { try_from(r.source_id) };
        // SAFETY: NULL (no JWT) or a live result from `ambit_authenticators_authenticate`.
        let authn: Option<&AuthnResult> = unsafe { try_from(r.authn) };
        let (Some(source), Some(destination)) = (r.source.to_rust(), r.destination.to_rust())
        else {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        };
        let remote_ip = match r.remote.family {
            0 => source.ip(),
            _ => match r.remote.to_rust() {
                Some(a) => a.ip(),
                None => return ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
            },
        };
        // SAFETY: `headers_len` readable headers (the struct's contract).
        let headers = match unsafe { header_map(r.headers, r.headers_len) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        let req = HttpRequest {
            source_id,
            source_ip: source.ip(),
            remote_ip,
            destination_ip: destination.ip(),
            destination_port: destination.port(),
            host,
            method,
            path,
            headers: &headers,
            auth: authn.and_then(|a| a.auth.as_ref()),
            sni,
        };
        let d = p.policies.evaluate(&target, &req);
        let reason = match d.reason {
            L7Reason::DeniedByPolicy => ambit_l7_reason::AMBIT_L7_REASON_DENIED_BY_POLICY,
            L7Reason::DeniedByCustom => ambit_l7_reason::AMBIT_L7_REASON_DENIED_BY_CUSTOM,
            L7Reason::NoAllowMatched => ambit_l7_reason::AMBIT_L7_REASON_NO_ALLOW_MATCHED,
            L7Reason::AllowedByPolicy => ambit_l7_reason::AMBIT_L7_REASON_ALLOWED_BY_POLICY,
            L7Reason::NoAllowPolicies => ambit_l7_reason::AMBIT_L7_REASON_NO_ALLOW_POLICIES,
            // A reason this ABI does not know yet: report it by the decision.
            _ if d.allowed => ambit_l7_reason::AMBIT_L7_REASON_ALLOWED_BY_POLICY,
            _ => ambit_l7_reason::AMBIT_L7_REASON_DENIED_BY_POLICY,
        };
        let policy = d.policy.as_deref().unwrap_or_default();
        // SAFETY: `policy_n` checked non-NULL; buffer per the contract.
        let res = unsafe { write_out(policy.as_bytes(), policy_buf, policy_buf_len, policy_n) };
        if res == ambit_result::AMBIT_RESULT_OK {
            // SAFETY: both checked non-NULL and writable per the contract.
            unsafe {
                *allowed_out = d.allowed;
                *reason_out = reason;
            }
        }
        res
    })
}

/// Releases policies. NULL is a no-op; releasing twice is undefined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_l7_policies_free(policies: *const ambit_l7_policies) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or policies from `ambit_l7_policies_from_yaml` released once.
        unsafe { free_arc(policies) }
    })
}
