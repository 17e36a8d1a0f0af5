//! The waypoint (Istio ambient's L7 proxy) started, reloaded and stopped from a C host.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use facade::identity::{CaSource, SystemClock};
use facade::waypoint::{L7Config, Waypoint, WaypointConfig};

use crate::error::{Error, ambit_error, ambit_result};
use crate::macros::{
    Castable, OwnershipBox, OwnershipRef, ffi_panic_boundary, take_box, try_clone_arc, try_out,
    try_ref_from_ptr, try_str, write_out,
};
use crate::node::{addr, fail, field, give_started, parse_local};
use crate::runtime::Runtime;

/// A running waypoint.
///
/// Thread-safe for reading metrics and reloading; corresponds to `Box<Waypoint>`. Free it
/// before the runtime it was started on.
#[derive(Debug)]
pub struct ambit_waypoint {
    _private: [u8; 0],
}

/// How a waypoint is named and where it listens. Text fields are UTF-8 with their lengths; a
/// NULL/0-length optional field takes its default.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ambit_waypoint_options {
    /// The waypoint Gateway's name (required): what `targetRefs` of kind Gateway and the
    /// config's `waypoint` references name.
    pub name: *const u8,
    /// Its length.
    pub name_len: usize,
    /// Its namespace (required). The identity is `spiffe://<ca's trust domain>/ns/<ns>/sa/<name>`.
    pub ns: *const u8,
    /// Its length.
    pub ns_len: usize,
    /// The HBONE listener, `ip:port` (required): the waypoint's address in the config, port
    /// 15008 unless the config says otherwise.
    pub hbone: *const u8,
    /// Its length.
    pub hbone_len: usize,
    /// Prometheus metrics `ip:port` (optional; off when empty).
    pub metrics: *const u8,
    /// Its length.
    pub metrics_len: usize,
    /// The network it is on (optional; default network when empty).
    pub network: *const u8,
    /// Its length.
    pub network_len: usize,
    /// Istio's root namespace, whose policies apply mesh-wide (optional; `istio-system`).
    pub root_namespace: *const u8,
    /// Its length.
    pub root_namespace_len: usize,
}

impl Castable for ambit_waypoint {
    type Ownership = OwnershipBox;
    type RustType = Running;
}

impl Castable for ambit_waypoint_options {
    type Ownership = OwnershipRef;
    type RustType = ambit_waypoint_options;
}

pub(crate) struct Running {
    waypoint: Arc<Waypoint>,
    handle: tokio::runtime::Handle,
    root_namespace: String,
    /// The last L7 load's warnings, one per line.
    warnings: Mutex<String>,
}

fn load_l7(yaml: &str, root_namespace: &str) -> Result<(L7Config, String), String> {
    L7Config::from_yaml(yaml, "<l7>", root_namespace)
        .map(|(l7, w)| {
            (
                l7,
                w.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })
        .map_err(|e| e.to_string())
}

/// Starts a waypoint on `rt` for the mesh in `config_yaml` (ztunnel-shaped local config, the
/// same the node proxy takes: services and workloads name their waypoint with `waypoint:
/// {destination: "/<ip>"}`), enforcing `l7_yaml` (Gateway API HTTPRoute, Istio
/// AuthorizationPolicy and RequestAuthentication; empty = none), with a certificate from `ca`.
/// BLOCKS until its listeners are bound. Bad YAML is `AMBIT_RESULT_CONFIG_INVALID`, a bad
/// option `AMBIT_RESULT_INVALID_PARAMETER`, a listener that cannot bind `AMBIT_RESULT_IO`;
/// details in `*err_out`. What the L7 YAML had that was skipped: `ambit_waypoint_warnings`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_waypoint_start(
    rt: *const crate::runtime::ambit_runtime,
    config_yaml: *const u8,
    config_len: usize,
    l7_yaml: *const u8,
    l7_len: usize,
    ca: *const crate::runtime::ambit_ca,
    options: *const ambit_waypoint_options,
    out: *mut *mut ambit_waypoint,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let yaml = try_str!(config_yaml, config_len);
        let l7_yaml = try_str!(l7_yaml, l7_len);
        let ca = try_clone_arc!(ca);
        let o = try_ref_from_ptr!(options);
        let out = try_out!(out);
        let invalid = |message: String| Error {
            code: ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
            message,
        };
        // SAFETY: each pointer/length pair is NULL or readable per `ambit_waypoint_options`.
        let parsed = (|| unsafe {
            let name = field(o.name, o.name_len, "name")?.unwrap_or_default();
            let ns = field(o.ns, o.ns_len, "ns")?.unwrap_or_default();
            if name.is_empty() || ns.is_empty() {
                return Err(invalid("name and ns are required".into()));
            }
            let hbone = addr(o.hbone, o.hbone_len, "hbone")?
                .ok_or_else(|| invalid("hbone: required (ip:port)".into()))?;
            let identity = ca
                .trust_domain()
                .workload_id(ns, name)
                .map_err(|e| invalid(format!("name/ns: {e}")))?;
            let mut wc = WaypointConfig::new(name, ns, identity);
            wc.hbone = hbone;
            wc.metrics = addr(o.metrics, o.metrics_len, "metrics")?;
            wc.readiness = None;
            wc.network = field(o.network, o.network_len, "network")?
                .unwrap_or_default()
                .to_owned();
            let root = field(o.root_namespace, o.root_namespace_len, "root_namespace")?
                .unwrap_or("istio-system")
                .to_owned();
            Ok((wc, root))
        })();
        let (config, root_namespace) = match parsed {
            Ok(p) => p,
            // SAFETY: `err_out` is NULL or writable per the contract.
            Err(e) => return unsafe { e.give(err_out) },
        };
        let cfg = match parse_local(yaml, err_out) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let (l7, warnings) = match load_l7(l7_yaml, &root_namespace) {
            Ok(l) => l,
            Err(m) => return fail(ambit_result::AMBIT_RESULT_CONFIG_INVALID, m, err_out),
        };
        let source = Arc::new(CaSource::new(
            ca,
            Duration::from_secs(24 * 3600),
            Arc::new(SystemClock),
        ));
        let tls = rt.tls.clone();
        let start = Waypoint::start(config, cfg.state, l7, source, tls);
        let wrap = |waypoint, handle| Running {
            waypoint: Arc::new(waypoint),
            handle,
            root_namespace,
            warnings: Mutex::new(warnings),
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
    config_yaml: *const u8,
    config_len: usize,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let w: &Running = try_ref_from_ptr!(waypoint);
        let yaml = try_str!(config_yaml, config_len);
        match parse_local(yaml, err_out) {
            Ok(c) => {
                w.waypoint.update_state(c.state);
                ambit_result::AMBIT_RESULT_OK
            }
            Err(code) => code,
        }
    })
}

/// Replaces the routes and policies (L7 YAML as for `ambit_waypoint_start`); requests already
/// started finish under the old ones. Invalid YAML changes nothing and returns
/// `AMBIT_RESULT_CONFIG_INVALID` (details in `*err_out`); otherwise the warnings are replaced.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_reload_l7(
    waypoint: *const ambit_waypoint,
    l7_yaml: *const u8,
    l7_len: usize,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let w: &Running = try_ref_from_ptr!(waypoint);
        let yaml = try_str!(l7_yaml, l7_len);
        match load_l7(yaml, &w.root_namespace) {
            Ok((l7, warnings)) => {
                // Held across the swap so that concurrent reloads leave a config and its own
                // warnings.
                let mut held = w.warnings.lock().unwrap_or_else(PoisonError::into_inner);
                w.waypoint.update_l7(l7);
                *held = warnings;
                ambit_result::AMBIT_RESULT_OK
            }
            Err(m) => fail(ambit_result::AMBIT_RESULT_CONFIG_INVALID, m, err_out),
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

/// The bound HBONE address as `ip:port` text.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_waypoint_hbone_addr(
    waypoint: *const ambit_waypoint,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let w: &Running = try_ref_from_ptr!(waypoint);
        let out_n = try_out!(out_n);
        let Some(a) = w.waypoint.bound().hbone else {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        };
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(a.to_string().as_bytes(), buf, len, out_n) }
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
