//! The waypoint (Istio ambient's L7 proxy) started, reloaded and stopped from a C host.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use facade::waypoint::{Waypoint, WaypointConfig};

use crate::addr::{ambit_socket_addr, optional};
use crate::error::{ambit_error, ambit_result, fail, warning_lines};
use crate::ffi::{
    Castable, OwnershipBox, ffi_panic_boundary, free_box, take_box, to_boxed_mut_ptr,
    try_ambit_str, try_clone_arc, try_mut_from_ptr, try_out, try_ref_from_ptr, write_out,
};
use crate::identity::ambit_ca;
use crate::runtime::{Runtime, ambit_runtime, give_started};
use crate::strings::ambit_str;

/// A running waypoint.
///
/// Thread-safe for reading metrics and reloading; corresponds to `Box<Running>`. Free it
/// before the runtime it was started on.
#[derive(Debug)]
pub struct ambit_waypoint {
    _private: [u8; 0],
}

/// How a waypoint is named and where it listens, built with `ambit_waypoint_options_new` and
/// the `_set_` calls (an option added later never changes this ABI). Defaults: metrics and
/// readiness off, the default network, root namespace `istio-system`.
///
/// Not thread-safe while being set; corresponds to `Box<Options>`.
#[derive(Debug)]
pub struct ambit_waypoint_options {
    _private: [u8; 0],
}

impl Castable for ambit_waypoint {
    type Ownership = OwnershipBox;
    type RustType = Running;
}

impl Castable for ambit_waypoint_options {
    type Ownership = OwnershipBox;
    type RustType = Options;
}

pub(crate) struct Options {
    name: String,
    namespace: String,
    hbone: std::net::SocketAddr,
    metrics: Option<std::net::SocketAddr>,
    network: String,
    root_namespace: String,
}

pub(crate) struct Running {
    waypoint: Arc<Waypoint>,
    handle: tokio::runtime::Handle,
    root_namespace: String,
    /// The last L7 load's warnings, one per line.
    warnings: Mutex<String>,
}

/// New options for the waypoint Gateway `name` in namespace `ns` (what `targetRefs` of kind
/// Gateway and the config's `waypoint` references name; its identity is
/// `spiffe://<ca's trust domain>/ns/<ns>/sa/<name>`), serving HBONE on `hbone` (its address in
/// the config, port 15008 unless the config says otherwise).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_options_new(
    name: ambit_str,
    ns: ambit_str,
    hbone: *const ambit_socket_addr,
    out: *mut *mut ambit_waypoint_options,
) -> ambit_result {
    ffi_panic_boundary!({
        let name = try_ambit_str!(name);
        let ns = try_ambit_str!(ns);
        let hbone: &ambit_socket_addr = try_ref_from_ptr!(hbone);
        let out = try_out!(out);
        let Some(hbone) = hbone.to_rust() else {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        };
        if name.is_empty() || ns.is_empty() {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        }
        let o = Options {
            name: name.to_owned(),
            namespace: ns.to_owned(),
            hbone,
            metrics: None,
            network: String::new(),
            root_namespace: facade::authz::DEFAULT_ROOT_NAMESPACE.to_owned(),
        };
        // SAFETY: `out` checked non-NULL and writable per the contract.
        unsafe { *out = to_boxed_mut_ptr(o) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Sets the Prometheus metrics listener; NULL turns it off.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_options_set_metrics(
    options: *mut ambit_waypoint_options,
    addr: *const ambit_socket_addr,
) -> ambit_result {
    ffi_panic_boundary!({
        let o: &mut Options = try_mut_from_ptr!(options);
        // SAFETY: `addr` is NULL or a readable address per the contract.
        match unsafe { optional(addr) } {
            Ok(a) => {
                o.metrics = a;
                ambit_result::AMBIT_RESULT_OK
            }
            Err(code) => code,
        }
    })
}

/// Sets the network the waypoint is on (empty: the default network).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_options_set_network(
    options: *mut ambit_waypoint_options,
    network: ambit_str,
) -> ambit_result {
    ffi_panic_boundary!({
        let o: &mut Options = try_mut_from_ptr!(options);
        o.network = try_ambit_str!(network).to_owned();
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Sets Istio's root namespace, whose policies apply mesh-wide (default `istio-system`).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_options_set_root_namespace(
    options: *mut ambit_waypoint_options,
    root_namespace: ambit_str,
) -> ambit_result {
    ffi_panic_boundary!({
        let o: &mut Options = try_mut_from_ptr!(options);
        let root = try_ambit_str!(root_namespace);
        if root.is_empty() {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        }
        o.root_namespace = root.to_owned();
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Frees waypoint options (copied at start). NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_options_free(options: *mut ambit_waypoint_options) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or options from `ambit_waypoint_options_new` freed once.
        unsafe { free_box(options) }
    })
}

/// Starts a waypoint on `rt` for the mesh in `config_yaml` (ztunnel-shaped local config, the
/// same the node proxy takes: services and workloads name their waypoint with `waypoint:
/// {destination: "/<ip>"}`), enforcing `l7_yaml` (Gateway API HTTPRoute, Istio
/// AuthorizationPolicy and RequestAuthentication; empty = none), with a certificate from `ca`.
/// BLOCKS until its listeners are bound. Bad YAML is `AMBIT_RESULT_CONFIG_INVALID`
/// (`ambit_error_location` says where), a listener that cannot bind `AMBIT_RESULT_IO`; details
/// in `*err_out`. What the L7 YAML had that was skipped: `ambit_waypoint_warnings`.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_start(
    rt: *const ambit_runtime,
    config_yaml: ambit_str,
    l7_yaml: ambit_str,
    ca: *const ambit_ca,
    options: *const ambit_waypoint_options,
    out: *mut *mut ambit_waypoint,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let yaml = try_ambit_str!(config_yaml).to_owned();
        let l7_yaml = try_ambit_str!(l7_yaml).to_owned();
        let ca = try_clone_arc!(ca);
        let o: &Options = try_ref_from_ptr!(options);
        let out = try_out!(out);
        let identity = match facade::run::waypoint_identity(&ca, &o.namespace, &o.name) {
            Ok(id) => id,
            Err(e) => return fail(e, err_out),
        };
        let mut wc = WaypointConfig::new(&o.name, &o.namespace, identity);
        wc.hbone = o.hbone;
        wc.metrics = o.metrics;
        wc.readiness = None;
        wc.network = o.network.clone();
        let (root, tls) = (o.root_namespace.clone(), rt.tls.clone());
        let root_namespace = root.clone();
        let start = async move { facade::run::waypoint(wc, &yaml, &l7_yaml, &root, ca, tls).await };
        let wrap = |(waypoint, warnings): (Waypoint, Vec<_>), handle| Running {
            waypoint: Arc::new(waypoint),
            handle,
            root_namespace,
            warnings: Mutex::new(warning_lines(&warnings)),
        };
        // SAFETY: `out` checked non-NULL; `err_out` NULL or writable per the contract.
        unsafe { give_started(rt, start, wrap, out, err_out) }
    })
}

/// Replaces the mesh state (local-config YAML). Invalid YAML changes nothing and returns
/// `AMBIT_RESULT_CONFIG_INVALID` (details in `*err_out`).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_reload(
    waypoint: *const ambit_waypoint,
    config_yaml: ambit_str,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let w: &Running = try_ref_from_ptr!(waypoint);
        let yaml = try_ambit_str!(config_yaml);
        match facade::run::local_state(yaml, facade::run::CONFIG_TEXT) {
            Ok(state) => {
                w.waypoint.update_state(state);
                ambit_result::AMBIT_RESULT_OK
            }
            Err(e) => fail(e, err_out),
        }
    })
}

/// Replaces the routes and policies (L7 YAML as for `ambit_waypoint_start`); requests already
/// started finish under the old ones. Invalid YAML changes nothing and returns
/// `AMBIT_RESULT_CONFIG_INVALID` (details in `*err_out`); otherwise the warnings are replaced.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_reload_l7(
    waypoint: *const ambit_waypoint,
    l7_yaml: ambit_str,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let w: &Running = try_ref_from_ptr!(waypoint);
        let yaml = try_ambit_str!(l7_yaml);
        match facade::run::l7_config(yaml, facade::run::L7_TEXT, &w.root_namespace) {
            Ok((l7, warnings)) => {
                // Held across the swap so that concurrent reloads leave a config and its own
                // warnings.
                let mut held = w.warnings.lock().unwrap_or_else(PoisonError::into_inner);
                w.waypoint.update_l7(l7);
                *held = warning_lines(&warnings);
                ambit_result::AMBIT_RESULT_OK
            }
            Err(e) => fail(e, err_out),
        }
    })
}

/// What the last L7 YAML loaded had that was skipped or accepted with a caveat, one per line
/// (empty when none), into `buf`; `*out_n` gets the length or the size needed.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_warnings(
    waypoint: *const ambit_waypoint,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let w: &Running = try_ref_from_ptr!(waypoint);
        let out_n = try_out!(out_n);
        let warnings = w
            .warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(warnings.as_bytes(), buf, len, out_n) }
    })
}

/// The waypoint's metrics (`istio_requests_total{reporter="waypoint",...}` and the request
/// histograms) in Prometheus text format, into `buf` (`*out_n` = length, or the size needed).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_metrics(
    waypoint: *const ambit_waypoint,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let w: &Running = try_ref_from_ptr!(waypoint);
        let out_n = try_out!(out_n);
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(w.waypoint.metrics().as_bytes(), buf, len, out_n) }
    })
}

/// The address the HBONE listener is bound to.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_hbone_addr(
    waypoint: *const ambit_waypoint,
    addr_out: *mut ambit_socket_addr,
) -> ambit_result {
    ffi_panic_boundary!({
        let w: &Running = try_ref_from_ptr!(waypoint);
        let addr_out = try_out!(addr_out);
        let Some(a) = w.waypoint.bound().hbone else {
            return ambit_result::AMBIT_RESULT_NOT_FOUND;
        };
        // SAFETY: `addr_out` checked non-NULL and writable per the contract.
        unsafe { *addr_out = ambit_socket_addr::from_rust(a) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Stops the waypoint (requests in flight get up to 1 s to finish). NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_free(waypoint: *mut ambit_waypoint) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a waypoint from `ambit_waypoint_start` freed once.
        if let Some(w) = unsafe { take_box(waypoint) } {
            let Running {
                waypoint, handle, ..
            } = *w;
            if let Ok(w) = Arc::try_unwrap(waypoint) {
                let _ = handle.block_on(handle.spawn(w.shutdown(Duration::from_secs(1))));
            }
        }
    })
}
