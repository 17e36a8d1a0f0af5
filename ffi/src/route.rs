//! Gateway API `HTTPRoute` decisions for hosts that run their own HTTP stack: load a route
//! table once, decide each request from any thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use facade::route::{
    Backend, Forward, ForwardedRequest, Outcome, RouteTable, RouteTarget, SplitMix64,
};
use http::{HeaderMap, Method};

use crate::error::{ambit_error, ambit_result, give_loaded, warning_lines};
use crate::ffi::{
    Castable, OwnershipArc, OwnershipBox, OwnershipRef, ffi_panic_boundary, free_arc, free_box,
    to_boxed_mut_ptr, try_ambit_str, try_clone_arc, try_from, try_mut_from_ptr, try_out,
    try_ref_from_ptr, write_out,
};
use crate::strings::{HeaderEdits, ambit_header, ambit_header_edits, ambit_str, header_map};

/// A compiled set of HTTPRoutes (and ambit's `Fault` / `LocalRateLimit` extension objects).
///
/// Immutable and thread-safe: decide requests from any number of threads at once, no runtime
/// needed. The only state that changes is inside `LocalRateLimit` token buckets (lock-free,
/// per table). Corresponds to `Arc<RouteTable>`; release with `ambit_route_table_free`.
/// Decisions keep the table alive, so it may be freed before them.
#[derive(Debug)]
pub struct ambit_route_table {
    _private: [u8; 0],
}

/// What a route decision says to do.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ambit_route_kind {
    /// Forward to the decision's backend, with its path, header edits and limits.
    AMBIT_ROUTE_KIND_FORWARD = 0,
    /// No HTTPRoute applies: forward to the original destination Service unchanged.
    AMBIT_ROUTE_KIND_UNROUTED = 1,
    /// Answer with the decision's status and `Location` (a `RequestRedirect`).
    AMBIT_ROUTE_KIND_REDIRECT = 2,
    /// Routes apply but no rule matches: answer 404.
    AMBIT_ROUTE_KIND_NOT_FOUND = 3,
    /// Nothing valid to forward to (all weights 0, no backendRefs, a filter that cannot be
    /// applied): answer 500. Also what a NULL decision reads as, so that misuse fails closed.
    AMBIT_ROUTE_KIND_NO_BACKEND = 4,
    /// Injected fault (ambit `Fault`): wait the decision's delay, then answer its status.
    AMBIT_ROUTE_KIND_ABORT = 5,
    /// The rule's `LocalRateLimit` is exhausted: answer 429.
    AMBIT_ROUTE_KIND_RATE_LIMITED = 6,
    /// A CORS preflight on a rule with a CORS filter: answer 200 with the response edits
    /// (`ambit_route_decision_response_edits`: the `Access-Control-*` headers, none for an
    /// origin the filter does not allow), not forwarded.
    AMBIT_ROUTE_KIND_PREFLIGHT = 7,
    /// The chosen backend is a Service in another namespace that no ReferenceGrant permits the
    /// route to use: answer 500. The decision's route and backend name them.
    AMBIT_ROUTE_KIND_BACKEND_NOT_PERMITTED = 8,
}

/// One request to decide, borrowed for the duration of the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ambit_route_request {
    /// Namespace of the destination Service.
    pub service_namespace: ambit_str,
    /// Name of the destination Service.
    pub service_name: ambit_str,
    /// The Service port the client connected to.
    pub port: u16,
    /// Namespace of the waypoint Gateway the request passes through; empty (or NULL) for none.
    /// Routes attached to the waypoint apply when the Service has none of its own.
    pub waypoint_namespace: ambit_str,
    /// Name of that waypoint Gateway; empty exactly when `waypoint_namespace` is.
    pub waypoint_name: ambit_str,
    /// The request's authority (HTTP/2 `:authority`); empty to use the `Host` header.
    pub authority: ambit_str,
    /// The method, e.g. `GET`.
    pub method: ambit_str,
    /// The request target in origin form: path plus optional `?query`.
    pub path: ambit_str,
    /// The request headers (may be NULL when `headers_len` is 0).
    pub headers: *const ambit_header,
    /// Number of headers.
    pub headers_len: usize,
    /// Seeds the random draws (weighted backend choice, fault and mirror sampling): the same
    /// seed on the same table gives the same decision. Use a fresh random value per request
    /// for real traffic splitting.
    pub seed: u64,
    /// The client's namespace (from its SPIFFE identity), for GAMMA consumer routes: a route
    /// attached to a Service in another namespace applies only to clients in its own
    /// namespace. Empty (or NULL) when unknown: consumer routes do not apply.
    pub client_namespace: ambit_str,
}

/// The decision for one request, with everything the host needs to act on it.
///
/// Owned by the caller (`Box<Decision>`); free with `ambit_route_decision_free`. Immutable:
/// read it from any thread, but do not free it while another thread reads it. Strings read
/// from it point into it and are valid until it is freed.
#[derive(Debug)]
pub struct ambit_route_decision {
    _private: [u8; 0],
}

/// Timeouts, fault delay and retry policy of a decision, in milliseconds (0 = none).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ambit_route_limits {
    /// The rule's `timeouts.request` (the whole transaction, retries included).
    pub request_timeout_ms: u64,
    /// The rule's `timeouts.backendRequest` (one attempt).
    pub backend_request_timeout_ms: u64,
    /// Fault injection: hold the request (FORWARD) or the answer (ABORT) this long first.
    pub delay_ms: u64,
    /// Retries after the first attempt (0: do not retry).
    pub retry_attempts: u32,
    /// Base interval of the exponential retry backoff (0: the host's default).
    pub retry_backoff_ms: u64,
}

pub(crate) struct Routes {
    table: RouteTable,
    warnings: String,
}

pub(crate) struct Decision {
    forward: Option<Forward>,
    kind: ambit_route_kind,
    status: u16,
    location: String,
    path: String,
    authority: String,
    request_edits: HeaderEdits,
    /// Filled by `ambit_route_decision_response_edits`, borrowed from there.
    response_edits: HeaderEdits,
    /// The headers a PREFLIGHT answers with.
    preflight: HeaderMap,
    /// The route and backend of a BACKEND_NOT_PERMITTED.
    refused: Option<(String, Backend)>,
    limits: ambit_route_limits,
}

impl Castable for ambit_route_table {
    type Ownership = OwnershipArc;
    type RustType = Routes;
}

impl Decision {
    /// The chosen backend of a FORWARD, or the refused one of a BACKEND_NOT_PERMITTED.
    fn backend(&self) -> Option<&Backend> {
        match (&self.forward, &self.refused) {
            (Some(f), _) => Some(f.backend()),
            (None, Some((_, b))) => Some(b),
            (None, None) => None,
        }
    }
}

impl Castable for ambit_route_decision {
    type Ownership = OwnershipBox;
    type RustType = Decision;
}

impl Castable for ambit_route_request {
    type Ownership = OwnershipRef;
    type RustType = ambit_route_request;
}

/// Loads Gateway API `HTTPRoute` YAML (multi-document or a `List`; also ambit's `Fault` and
/// `LocalRateLimit`) into a new table in `*table_out`. Unknown fields and unsupported features
/// are warnings (`ambit_route_table_warnings`). Anything the Kubernetes API server would refuse
/// returns `AMBIT_RESULT_CONFIG_INVALID`, with an error naming the object and field in
/// `*err_out` when `err_out` is non-NULL. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_table_from_yaml(
    yaml: ambit_str,
    table_out: *mut *const ambit_route_table,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let text = try_ambit_str!(yaml);
        let table_out = try_out!(table_out);
        let loaded = RouteTable::parse(text, facade::run::L7_TEXT).map(|loaded| Routes {
            warnings: warning_lines(&loaded.warnings),
            table: loaded.table,
        });
        // SAFETY: `table_out` checked non-NULL; `err_out` NULL or writable per the contract.
        unsafe { give_loaded(loaded, table_out, err_out) }
    })
}

/// Number of HTTPRoutes in the table (0 for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_table_len(table: *const ambit_route_table) -> usize {
    ffi_panic_boundary!(0, {
        // SAFETY: NULL, or a live table from `ambit_route_table_from_yaml`.
        unsafe { try_from(table) }.map_or(0, |r: &Routes| r.table.len())
    })
}

/// The load warnings, one per line (UTF-8, not NUL-terminated; empty when there were none),
/// into `buf`; `*out_n` gets the length, or the size needed with
/// `AMBIT_RESULT_INSUFFICIENT_SIZE`.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_table_warnings(
    table: *const ambit_route_table,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let routes: &Routes = try_ref_from_ptr!(table);
        let out_n = try_out!(out_n);
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(routes.warnings.as_bytes(), buf, len, out_n) }
    })
}

/// Decides one request; `*decision_out` gets a new decision to read and free. Routes attached
/// to the Service (and port) apply first, then those attached to the waypoint for the request's
/// host; none: UNROUTED; routes but no matching rule: NOT_FOUND. Returns
/// `AMBIT_RESULT_INVALID_PARAMETER` for a method, path, authority or header HTTP does not
/// allow, or a waypoint with only one of namespace and name. Thread-safe; no runtime; rate
/// limits use the monotonic clock.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_table_decide(
    table: *const ambit_route_table,
    request: *const ambit_route_request,
    decision_out: *mut *mut ambit_route_decision,
) -> ambit_result {
    ffi_panic_boundary!({
        let routes: Arc<Routes> = try_clone_arc!(table);
        let r = try_ref_from_ptr!(request);
        let decision_out = try_out!(decision_out);
        let service_namespace = try_ambit_str!(r.service_namespace);
        let service_name = try_ambit_str!(r.service_name);
        let method = try_ambit_str!(r.method);
        let path = try_ambit_str!(r.path);
        // SAFETY: the request's strings are readable for the call (this function's contract).
        let optional = unsafe {
            (
                r.waypoint_namespace.optional_text(),
                r.waypoint_name.optional_text(),
                r.authority.optional_text(),
                r.client_namespace.optional_text(),
            )
        };
        let (waypoint_ns, waypoint_name, authority, client_namespace) = match optional {
            (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
            (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
                return e;
            }
        };
        let waypoint = match (waypoint_ns, waypoint_name) {
            (Some(ns), Some(name)) => Some((ns, name)),
            (None, None) => None,
            _ => return ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        };
        // SAFETY: `headers` holds `headers_len` readable headers (the struct's contract).
        let headers = match unsafe { header_map(r.headers, r.headers_len) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        let target = RouteTarget {
            service_namespace,
            service_name,
            port: r.port,
            waypoint,
            authority,
            client_namespace,
        };
        let mut rng = SplitMix64::new(r.seed);
        let outcome =
            routes
                .table
                .route(&target, &method, path, &headers, Instant::now(), &mut rng);
        let decision = match decision(outcome, method, path, authority, headers) {
            Ok(d) => d,
            Err(code) => return code,
        };
        // SAFETY: `decision_out` checked non-NULL and writable per the contract.
        unsafe { *decision_out = to_boxed_mut_ptr(decision) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Restates an outcome as a decision the host can read after the table is released: the
/// request as forwarded (ambit-route's `ForwardedRequest`) as edits of the headers passed in.
fn decision(
    outcome: Outcome,
    method: Method,
    path: &str,
    authority: Option<&str>,
    headers: HeaderMap,
) -> Result<Decision, ambit_result> {
    let status = outcome.status().map_or(0, |s| s.as_u16());
    let forward = match &outcome {
        Outcome::Forward(f) => Some(f),
        _ => None,
    };
    let fwd = ForwardedRequest::new(forward, &method, path, authority, headers.clone())
        .map_err(|_| ambit_result::AMBIT_RESULT_INVALID_PARAMETER)?;
    let mut d = Decision {
        forward: None,
        kind: ambit_route_kind::AMBIT_ROUTE_KIND_NO_BACKEND,
        status,
        location: String::new(),
        path: fwd.path_and_query,
        authority: fwd.authority.unwrap_or_default(),
        request_edits: HeaderEdits::between(&headers, &fwd.headers),
        response_edits: HeaderEdits::default(),
        preflight: HeaderMap::new(),
        refused: None,
        limits: ambit_route_limits::default(),
    };
    match outcome {
        Outcome::Forward(f) => {
            d.kind = ambit_route_kind::AMBIT_ROUTE_KIND_FORWARD;
            d.limits = ambit_route_limits {
                request_timeout_ms: millis(f.timeouts.request),
                backend_request_timeout_ms: millis(f.timeouts.backend_request),
                delay_ms: millis(f.delay),
                retry_attempts: f.retry().map_or(0, |r| r.attempts),
                retry_backoff_ms: millis(f.retry().and_then(|r| r.backoff)),
            };
            d.forward = Some(f);
        }
        Outcome::Unrouted => d.kind = ambit_route_kind::AMBIT_ROUTE_KIND_UNROUTED,
        Outcome::NotFound => d.kind = ambit_route_kind::AMBIT_ROUTE_KIND_NOT_FOUND,
        Outcome::Redirect { location, .. } => {
            d.kind = ambit_route_kind::AMBIT_ROUTE_KIND_REDIRECT;
            d.location = location;
        }
        Outcome::Abort { delay, .. } => {
            d.kind = ambit_route_kind::AMBIT_ROUTE_KIND_ABORT;
            d.limits.delay_ms = millis(delay);
        }
        Outcome::RateLimited => d.kind = ambit_route_kind::AMBIT_ROUTE_KIND_RATE_LIMITED,
        Outcome::NoBackend => d.kind = ambit_route_kind::AMBIT_ROUTE_KIND_NO_BACKEND,
        Outcome::BackendNotPermitted { route, backend } => {
            d.kind = ambit_route_kind::AMBIT_ROUTE_KIND_BACKEND_NOT_PERMITTED;
            d.refused = Some((route, backend));
        }
        Outcome::Preflight { headers } => {
            d.kind = ambit_route_kind::AMBIT_ROUTE_KIND_PREFLIGHT;
            d.preflight = headers;
        }
        // An outcome this ABI does not know yet: fail closed, with its status.
        _ => {
            if d.status == 0 {
                d.status = 500;
            }
        }
    }
    Ok(d)
}

fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Releases a route table. NULL is a no-op; releasing twice is undefined behaviour. Decisions
/// made from it stay valid.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_table_free(table: *const ambit_route_table) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a table from `ambit_route_table_from_yaml` released once.
        unsafe { free_arc(table) }
    })
}

/// What to do (`AMBIT_ROUTE_KIND_NO_BACKEND` for NULL, so that misuse answers 500).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_kind(
    decision: *const ambit_route_decision,
) -> ambit_route_kind {
    ffi_panic_boundary!(ambit_route_kind::AMBIT_ROUTE_KIND_NO_BACKEND, {
        // SAFETY: NULL, or a live decision from `ambit_route_table_decide`.
        unsafe { try_from(decision) }
            .map_or(ambit_route_kind::AMBIT_ROUTE_KIND_NO_BACKEND, |d| d.kind)
    })
}

/// The HTTP status to answer with: 404, 500, 429, the redirect's or the fault's status; 0 for
/// FORWARD and UNROUTED (and 500 for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_status(decision: *const ambit_route_decision) -> u16 {
    ffi_panic_boundary!(500, {
        // SAFETY: NULL, or a live decision from `ambit_route_table_decide`.
        unsafe { try_from(decision) }.map_or(500, |d: &Decision| d.status)
    })
}

fn read<'d>(
    decision: *const ambit_route_decision,
    f: impl FnOnce(&'d Decision) -> &'d [u8],
) -> ambit_str {
    // SAFETY: NULL, or a live decision from `ambit_route_table_decide`; the string returned
    // points into it, valid until the caller frees it (documented on each getter).
    unsafe { try_from(decision) }.map_or_else(ambit_str::default, |d| ambit_str::borrow(f(d)))
}

/// The matching HTTPRoute as `namespace/name` (FORWARD and BACKEND_NOT_PERMITTED; empty
/// otherwise or for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_route(decision: *const ambit_route_decision) -> ambit_str {
    ffi_panic_boundary!(ambit_str::default(), {
        read(decision, |d| match (&d.forward, &d.refused) {
            (Some(f), _) => f.route().as_bytes(),
            (None, Some((route, _))) => route.as_bytes(),
            (None, None) => &[][..],
        })
    })
}

/// The chosen backend Service's namespace (FORWARD and BACKEND_NOT_PERMITTED; empty
/// otherwise).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_backend_namespace(
    decision: *const ambit_route_decision,
) -> ambit_str {
    ffi_panic_boundary!(ambit_str::default(), {
        read(decision, |d| {
            d.backend().map_or(&[][..], |b| b.namespace.as_bytes())
        })
    })
}

/// The chosen backend Service's name (FORWARD and BACKEND_NOT_PERMITTED; empty otherwise).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_backend_name(
    decision: *const ambit_route_decision,
) -> ambit_str {
    ffi_panic_boundary!(ambit_str::default(), {
        read(decision, |d| {
            d.backend().map_or(&[][..], |b| b.name.as_bytes())
        })
    })
}

/// The chosen backend's port; 0 when the `backendRef` named none (use the port the request was
/// addressed to), when the decision is not FORWARD, or for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_backend_port(decision: *const ambit_route_decision) -> u16 {
    ffi_panic_boundary!(0, {
        // SAFETY: NULL, or a live decision from `ambit_route_table_decide`.
        unsafe { try_from(decision) }
            .and_then(|d: &Decision| d.backend())
            .and_then(|b| b.port)
            .unwrap_or(0)
    })
}

/// The complete `Location` of a REDIRECT (a path and query only when the request had no host
/// and the filter sets none); empty otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_location(
    decision: *const ambit_route_decision,
) -> ambit_str {
    ffi_panic_boundary!(ambit_str::default(), {
        read(decision, |d| d.location.as_bytes())
    })
}

/// The request target to forward (path and query) after `URLRewrite`; the request's own
/// unless a FORWARD rewrote it.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_path(decision: *const ambit_route_decision) -> ambit_str {
    ffi_panic_boundary!(ambit_str::default(), {
        read(decision, |d| d.path.as_bytes())
    })
}

/// The authority to forward with after a `URLRewrite` hostname, when the request carried an
/// authority (HTTP/2); empty when it did not (the rewritten host is then a `host` header edit).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_authority(
    decision: *const ambit_route_decision,
) -> ambit_str {
    ffi_panic_boundary!(ambit_str::default(), {
        read(decision, |d| d.authority.as_bytes())
    })
}

/// The edits to make to the request headers before forwarding (`RequestHeaderModifier` of the
/// rule and of the chosen backendRef, and a rewritten `host`), applied in order to the headers
/// passed in. Empty unless FORWARD. Borrowed from the decision: do not free; valid until the
/// decision is freed. NULL for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_request_edits(
    decision: *const ambit_route_decision,
) -> *const ambit_header_edits {
    ffi_panic_boundary!(std::ptr::null(), {
        // SAFETY: NULL, or a live decision from `ambit_route_table_decide`.
        unsafe { try_from(decision) }
            .map_or(std::ptr::null(), |d: &Decision| d.request_edits.as_ptr())
    })
}

/// The edits to make to the backend's response headers (`ResponseHeaderModifier` of the rule
/// and of the chosen backendRef), given those headers: `*edits_out` points to a list inside the
/// decision (empty unless FORWARD or PREFLIGHT), valid until the next call for this decision or its free.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_response_edits(
    decision: *mut ambit_route_decision,
    response_headers: *const ambit_header,
    response_headers_len: usize,
    edits_out: *mut *const ambit_header_edits,
) -> ambit_result {
    ffi_panic_boundary!({
        let d: &mut Decision = try_mut_from_ptr!(decision);
        let edits_out = try_out!(edits_out);
        // SAFETY: `response_headers_len` readable headers, per the contract.
        let before = match unsafe { header_map(response_headers, response_headers_len) } {
            Ok(h) => h,
            Err(e) => return e,
        };
        d.response_edits = match &d.forward {
            Some(f) => {
                let mut after = before.clone();
                f.apply_response(&mut after);
                HeaderEdits::between(&before, &after)
            }
            // A preflight has no upstream response: its headers are the whole answer.
            None if !d.preflight.is_empty() => {
                HeaderEdits::between(&HeaderMap::new(), &d.preflight)
            }
            None => HeaderEdits::default(),
        };
        // SAFETY: `edits_out` checked non-NULL and writable per the contract.
        unsafe { *edits_out = d.response_edits.as_ptr() };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Copies the decision's timeouts, fault delay and retry policy into `*limits_out` (all 0
/// unless FORWARD, except the delay of an ABORT).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_limits(
    decision: *const ambit_route_decision,
    limits_out: *mut ambit_route_limits,
) -> ambit_result {
    ffi_panic_boundary!({
        let d: &Decision = try_ref_from_ptr!(decision);
        let limits_out = try_out!(limits_out);
        // SAFETY: `limits_out` checked non-NULL and writable per the contract.
        unsafe { *limits_out = d.limits };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Whether a backend response with `status` should be retried under the rule's `retry`
/// (false when there is no retry stanza, attempts is 0, the decision is not FORWARD, or NULL).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_retries_status(
    decision: *const ambit_route_decision,
    status: u16,
) -> bool {
    ffi_panic_boundary!(false, {
        let Ok(status) = http::StatusCode::from_u16(status) else {
            return false;
        };
        // SAFETY: NULL, or a live decision from `ambit_route_table_decide`.
        unsafe { try_from(decision) }
            .and_then(|d: &Decision| d.forward.as_ref())
            .and_then(|f| f.retry())
            .is_some_and(|r| r.retries_status(status))
    })
}

/// Number of `RequestMirror` backends this request was sampled for (send each a copy, ignore
/// the responses); 0 unless FORWARD.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_mirror_count(
    decision: *const ambit_route_decision,
) -> usize {
    ffi_panic_boundary!(0, {
        // SAFETY: NULL, or a live decision from `ambit_route_table_decide`.
        unsafe { try_from(decision) }.map_or(0, |d: &Decision| {
            d.forward.as_ref().map_or(0, |f| f.mirrors().count())
        })
    })
}

/// Reads mirror `index`: its Service namespace and name (pointing into the decision) and port
/// (0: the request's). `AMBIT_RESULT_NOT_FOUND` past the end.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_mirror(
    decision: *const ambit_route_decision,
    index: usize,
    namespace_out: *mut ambit_str,
    name_out: *mut ambit_str,
    port_out: *mut u16,
) -> ambit_result {
    ffi_panic_boundary!({
        let d: &Decision = try_ref_from_ptr!(decision);
        let namespace_out = try_out!(namespace_out);
        let name_out = try_out!(name_out);
        let port_out = try_out!(port_out);
        let Some(b) = d.forward.as_ref().and_then(|f| f.mirrors().nth(index)) else {
            return ambit_result::AMBIT_RESULT_NOT_FOUND;
        };
        // SAFETY: all three checked non-NULL and writable per the contract.
        unsafe {
            *namespace_out = ambit_str::borrow(b.namespace.as_bytes());
            *name_out = ambit_str::borrow(b.name.as_bytes());
            *port_out = b.port.unwrap_or(0);
        }
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Frees a decision (and the edit list borrowed from it). NULL is a no-op; freeing twice is
/// undefined behaviour.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_route_decision_free(decision: *mut ambit_route_decision) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a decision from `ambit_route_table_decide` freed once.
        unsafe { free_box(decision) }
    })
}
