//! Istio `RequestAuthentication` (JWT) for hosts that run their own HTTP stack: verify the
//! tokens of a request, read its principal and claims, and the header edits to forward with.

use facade::authn::jwks_uri_from_openid_configuration;
use facade::authn::{Authenticators, AuthnOutcome, RequestAuth};

use crate::error::{ambit_error, ambit_result, fail, give_loaded, warning_lines};
use crate::ffi::{
    Castable, OwnershipArc, OwnershipBox, ffi_panic_boundary, free_arc, free_box, to_boxed_mut_ptr,
    try_ambit_str, try_from, try_out, try_ref_from_ptr, write_out,
};
use crate::l7::{ambit_waypoint_target, waypoint_target};
use crate::strings::{HeaderEdits, ambit_header, ambit_header_edits, ambit_str, header_map};

/// All RequestAuthentications of a waypoint, with their key sets.
///
/// Thread-safe: authenticate from any number of threads at once, also while another thread
/// installs a key set with `ambit_authenticators_set_jwks` (readers never block; each request
/// sees the old or the new set). Corresponds to `Arc<Authenticators>`; release with
/// `ambit_authenticators_free`.
#[derive(Debug)]
pub struct ambit_authenticators {
    _private: [u8; 0],
}

/// What authentication decided.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ambit_authn_outcome {
    /// No token (or no rule applies): continue without a request principal.
    AMBIT_AUTHN_OUTCOME_ANONYMOUS = 0,
    /// Every token found verified: the result has a principal and claims.
    AMBIT_AUTHN_OUTCOME_AUTHENTICATED = 1,
    /// A token is present but invalid: answer 401 with the reason. Also what a NULL result
    /// reads as, so that misuse fails closed.
    AMBIT_AUTHN_OUTCOME_DENIED = 2,
}

/// The authentication of one request.
///
/// Owned by the caller (`Box<AuthnResult>`); free with `ambit_authn_result_free`. Immutable:
/// read it from any thread (and pass it to `ambit_l7_policies_decide`), but do not free it
/// while another thread uses it. Strings and edit lists read from it point into it.
#[derive(Debug)]
pub struct ambit_authn_result {
    _private: [u8; 0],
}

pub(crate) struct Authn {
    authenticators: Authenticators,
    warnings: String,
}

pub(crate) struct AuthnResult {
    outcome: ambit_authn_outcome,
    pub(crate) auth: Option<RequestAuth>,
    principal: String,
    reason: String,
    path: String,
    edits: HeaderEdits,
}

impl Castable for ambit_authenticators {
    type Ownership = OwnershipArc;
    type RustType = Authn;
}

impl Castable for ambit_authn_result {
    type Ownership = OwnershipBox;
    type RustType = AuthnResult;
}

/// Loads the `RequestAuthentication` objects of an Istio YAML stream (other kinds are skipped;
/// root namespace `istio-system`) into `*authenticators_out`. Inline `jwks` are parsed now;
/// `jwksUri` sets must be fetched by the host and installed with
/// `ambit_authenticators_set_jwks` (see `ambit_authenticators_jwks_uri`); until then tokens
/// needing them are refused. A malformed object returns `AMBIT_RESULT_CONFIG_INVALID` with an
/// error naming it in `*err_out` (if non-NULL). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authenticators_from_yaml(
    yaml: ambit_str,
    authenticators_out: *mut *const ambit_authenticators,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let text = try_ambit_str!(yaml);
        let out = try_out!(authenticators_out);
        let loaded = Authenticators::parse(
            text,
            facade::run::L7_TEXT,
            facade::authz::DEFAULT_ROOT_NAMESPACE,
        )
        .map(|(authenticators, warnings)| Authn {
            authenticators,
            warnings: warning_lines(&warnings),
        });
        // SAFETY: `out` checked non-NULL; `err_out` NULL or writable per the contract.
        unsafe { give_loaded(loaded, out, err_out) }
    })
}

/// Number of RequestAuthentications that apply to some waypoint (0 for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authenticators_len(authenticators: *const ambit_authenticators) -> usize {
    ffi_panic_boundary!(0, {
        // SAFETY: NULL, or live authenticators from `ambit_authenticators_from_yaml`.
        unsafe { try_from(authenticators) }.map_or(0, |a: &Authn| a.authenticators.len())
    })
}

/// The load warnings, one per line (empty when none), into `buf`; `*out_n` gets the length or
/// the size needed.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authenticators_warnings(
    authenticators: *const ambit_authenticators,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let a: &Authn = try_ref_from_ptr!(authenticators);
        let out_n = try_out!(out_n);
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(a.warnings.as_bytes(), buf, len, out_n) }
    })
}

/// Number of remote key sets the host must fetch (`jwksUri`s and OpenID discovery documents),
/// 0 for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authenticators_jwks_uri_count(
    authenticators: *const ambit_authenticators,
) -> usize {
    ffi_panic_boundary!(0, {
        // SAFETY: NULL, or live authenticators from `ambit_authenticators_from_yaml`.
        unsafe { try_from(authenticators) }
            .map_or(0, |a: &Authn| a.authenticators.jwks_uris().len())
    })
}

/// Remote key set `index` (sorted by URI): the URI to GET into `buf` (`*out_n` = length, or the
/// size needed), the rule's fetch timeout in `*timeout_ms_out`, and in
/// `*openid_discovery_out` whether the URI is an OpenID discovery document (read its
/// `jwks_uri` with `ambit_jwks_uri_from_openid_configuration`, fetch that, and install the key
/// set under this URI). `AMBIT_RESULT_NOT_FOUND` past the end.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authenticators_jwks_uri(
    authenticators: *const ambit_authenticators,
    index: usize,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
    timeout_ms_out: *mut u64,
    openid_discovery_out: *mut bool,
) -> ambit_result {
    ffi_panic_boundary!({
        let a: &Authn = try_ref_from_ptr!(authenticators);
        let out_n = try_out!(out_n);
        let timeout_ms_out = try_out!(timeout_ms_out);
        let openid_discovery_out = try_out!(openid_discovery_out);
        let uris = a.authenticators.jwks_uris();
        let Some(u) = uris.get(index) else {
            return ambit_result::AMBIT_RESULT_NOT_FOUND;
        };
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        let r = unsafe { write_out(u.uri.as_bytes(), buf, len, out_n) };
        if r == ambit_result::AMBIT_RESULT_OK {
            // SAFETY: both checked non-NULL and writable per the contract.
            unsafe {
                *timeout_ms_out = u64::try_from(u.timeout.as_millis()).unwrap_or(u64::MAX);
                *openid_discovery_out = u.openid_discovery;
            }
        }
        r
    })
}

/// Installs (or rotates) the key set fetched from `uri`: `json` is the JWKS document.
/// `*keys_out` gets how many keys are usable. `AMBIT_RESULT_JWKS_UNKNOWN_URI` when no rule uses
/// `uri`; `AMBIT_RESULT_JWKS_INVALID` for a document that is not a usable JWKS (details in
/// `*err_out` if non-NULL); on error the previous set stays in place. Thread-safe, also
/// against concurrent `ambit_authenticators_authenticate` calls.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authenticators_set_jwks(
    authenticators: *const ambit_authenticators,
    uri: ambit_str,
    json: ambit_str,
    keys_out: *mut usize,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let a: &Authn = try_ref_from_ptr!(authenticators);
        let uri = try_ambit_str!(uri);
        let json = try_ambit_str!(json);
        let keys_out = try_out!(keys_out);
        match a.authenticators.set_jwks(uri, json) {
            Ok(n) => {
                // SAFETY: `keys_out` checked non-NULL and writable per the contract.
                unsafe { *keys_out = n };
                ambit_result::AMBIT_RESULT_OK
            }
            Err(e) => fail(facade::Error::from(e), err_out),
        }
    })
}

/// Reads the `jwks_uri` of an OpenID discovery document (`json`) into `buf` (`*out_n` =
/// length, or the size needed). `AMBIT_RESULT_JWKS_INVALID` when the document is not JSON or
/// has no `jwks_uri` (details in `*err_out` if non-NULL). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_jwks_uri_from_openid_configuration(
    json: ambit_str,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let json = try_ambit_str!(json);
        let out_n = try_out!(out_n);
        match jwks_uri_from_openid_configuration(json) {
            // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
            Ok(uri) => unsafe { write_out(uri.as_bytes(), buf, len, out_n) },
            Err(e) => fail(facade::Error::from(e), err_out),
        }
    })
}

/// Authenticates one request through `target`: `headers` as received, `path` the request
/// target (path and query), `now_unix` the current time in seconds since the Unix epoch (the
/// host's clock; `exp`/`nbf` get 60 s of leeway). `*result_out` gets a new result: its
/// outcome is a value (a DENIED request is still `AMBIT_RESULT_OK` here). Thread-safe; no I/O.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_authenticators_authenticate(
    authenticators: *const ambit_authenticators,
    target: *const ambit_waypoint_target,
    headers: *const ambit_header,
    headers_len: usize,
    path: ambit_str,
    now_unix: u64,
    result_out: *mut *mut ambit_authn_result,
) -> ambit_result {
    ffi_panic_boundary!({
        let a: &Authn = try_ref_from_ptr!(authenticators);
        let t = try_ref_from_ptr!(target);
        let path = try_ambit_str!(path);
        let result_out = try_out!(result_out);
        // SAFETY: the target's strings are readable for the call (this function's contract).
        let target = match unsafe { waypoint_target(t) } {
            Ok(t) => t,
            Err(e) => return e,
        };
        // SAFETY: `headers_len` readable headers, per the contract.
        let before = match unsafe { header_map(headers, headers_len) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        let outcome = a
            .authenticators
            .authenticate(&target, &before, path, now_unix);
        let mut result = AuthnResult {
            outcome: ambit_authn_outcome::AMBIT_AUTHN_OUTCOME_DENIED,
            auth: None,
            principal: String::new(),
            reason: String::new(),
            path: path.to_owned(),
            edits: HeaderEdits::default(),
        };
        let edits = match outcome {
            AuthnOutcome::Anonymous { edits } => {
                result.outcome = ambit_authn_outcome::AMBIT_AUTHN_OUTCOME_ANONYMOUS;
                Some(edits)
            }
            AuthnOutcome::Authenticated { auth, edits } => {
                result.outcome = ambit_authn_outcome::AMBIT_AUTHN_OUTCOME_AUTHENTICATED;
                result.principal = auth.principal();
                result.auth = Some(auth);
                Some(edits)
            }
            AuthnOutcome::Denied { reason } => {
                result.reason = reason.to_string();
                None
            }
            // An outcome this ABI does not know yet: fail closed.
            other => {
                result.reason = other.to_string();
                None
            }
        };
        if let Some(edits) = edits {
            let (after, forwarded_path) = edits.forwarded(&before, path);
            result.edits = HeaderEdits::between(&before, &after);
            result.path = forwarded_path;
        }
        // SAFETY: `result_out` checked non-NULL and writable per the contract.
        unsafe { *result_out = to_boxed_mut_ptr(result) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Releases authenticators. NULL is a no-op; releasing twice is undefined behaviour. Results
/// made from them stay valid.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authenticators_free(authenticators: *const ambit_authenticators) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or authenticators from `ambit_authenticators_from_yaml` released once.
        unsafe { free_arc(authenticators) }
    })
}

/// The outcome (`AMBIT_AUTHN_OUTCOME_DENIED` for NULL, so that misuse fails closed).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authn_result_outcome(
    result: *const ambit_authn_result,
) -> ambit_authn_outcome {
    ffi_panic_boundary!(ambit_authn_outcome::AMBIT_AUTHN_OUTCOME_DENIED, {
        // SAFETY: NULL, or a live result from `ambit_authenticators_authenticate`.
        unsafe { try_from(result) }.map_or(ambit_authn_outcome::AMBIT_AUTHN_OUTCOME_DENIED, |r| {
            r.outcome
        })
    })
}

/// The request principal, `iss/sub` as Istio's `requestPrincipals` match it (AUTHENTICATED
/// only; empty otherwise). Points into the result.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authn_result_principal(result: *const ambit_authn_result) -> ambit_str {
    ffi_panic_boundary!(ambit_str::default(), {
        // SAFETY: NULL, or a live result; the string points into it.
        unsafe { try_from(result) }.map_or_else(ambit_str::default, |r: &AuthnResult| {
            ambit_str::borrow(r.principal.as_bytes())
        })
    })
}

/// Why a DENIED request was refused, in Envoy's wording (e.g. `Jwt is expired`), to send with
/// the 401; empty otherwise. Points into the result.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authn_result_reason(result: *const ambit_authn_result) -> ambit_str {
    ffi_panic_boundary!(ambit_str::default(), {
        // SAFETY: NULL, or a live result; the string points into it.
        unsafe { try_from(result) }.map_or_else(ambit_str::default, |r: &AuthnResult| {
            ambit_str::borrow(r.reason.as_bytes())
        })
    })
}

/// A claim of the verified token by path (`a.b.c` is `claims.a.b.c`), as JSON text
/// (`"alice"`, `42`, `["read","write"]`, `{...}`), into `buf`; `*out_n` gets the length or
/// the size needed. `AMBIT_RESULT_NOT_FOUND` when the request is not AUTHENTICATED or the
/// token has no such claim. Space-delimited claims (`scope`, `permission`) read as lists.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authn_result_claim(
    result: *const ambit_authn_result,
    path: ambit_str,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let r: &AuthnResult = try_ref_from_ptr!(result);
        let path = try_ambit_str!(path);
        let out_n = try_out!(out_n);
        let keys: Vec<String> = path.split('.').map(str::to_owned).collect();
        let Some(value) = r.auth.as_ref().and_then(|a| a.claim(&keys)) else {
            return ambit_result::AMBIT_RESULT_NOT_FOUND;
        };
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(value.to_string().as_bytes(), buf, len, out_n) }
    })
}

/// The edits to make to the request headers before forwarding (token removed unless
/// `forwardOriginalToken`, `outputPayloadToHeader` / `outputClaimToHeaders` set, forged
/// output headers stripped), applied in order to the headers passed in. Empty when DENIED.
/// Borrowed from the result: do not free. NULL for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authn_result_edits(
    result: *const ambit_authn_result,
) -> *const ambit_header_edits {
    ffi_panic_boundary!(std::ptr::null(), {
        // SAFETY: NULL, or a live result from `ambit_authenticators_authenticate`.
        unsafe { try_from(result) }.map_or(std::ptr::null(), |r: &AuthnResult| r.edits.as_ptr())
    })
}

/// The request target to forward: the path passed in, minus a query parameter that carried
/// the token (unless `forwardOriginalToken`). Points into the result.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authn_result_path(result: *const ambit_authn_result) -> ambit_str {
    ffi_panic_boundary!(ambit_str::default(), {
        // SAFETY: NULL, or a live result; the string points into it.
        unsafe { try_from(result) }.map_or_else(ambit_str::default, |r: &AuthnResult| {
            ambit_str::borrow(r.path.as_bytes())
        })
    })
}

/// Frees a result. NULL is a no-op; freeing twice is undefined behaviour. Do not free it while
/// an `ambit_l7_policies_decide` call that was given it is running.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_authn_result_free(result: *mut ambit_authn_result) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a result from `ambit_authenticators_authenticate` freed once.
        unsafe { free_box(result) }
    })
}
