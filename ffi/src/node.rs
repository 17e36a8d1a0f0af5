//! The node proxy (ztunnel behaviour) started, reloaded and stopped from a C host.

use std::sync::Arc;
use std::time::Duration;

use facade::node::{NodeConfig, NodeProxy};

use crate::addr::{ambit_socket_addr, optional};
use crate::error::{Error, ambit_error, ambit_result, fail};
use crate::ffi::{
    Castable, OwnershipBox, ffi_panic_boundary, free_box, take_box, to_boxed_mut_ptr,
    try_ambit_str, try_clone_arc, try_mut_from_ptr, try_out, try_ref_from_ptr, write_out,
};
use crate::identity::ambit_ca;
use crate::runtime::{Runtime, ambit_runtime, give_started};
use crate::strings::ambit_str;

/// A running node proxy.
///
/// Thread-safe for reading metrics and reloading; corresponds to `Box<Node>`. Free it before
/// the runtime it was started on.
#[derive(Debug)]
pub struct ambit_node_proxy {
    _private: [u8; 0],
}

/// How a node proxy is set up, built with `ambit_node_options_new` and the `_set_` calls (an
/// option added later never changes this ABI). Defaults: SOCKS5 on 127.0.0.1 (any port),
/// HBONE port 15008, HTTP CONNECT, metrics, readiness and admin off.
///
/// Not thread-safe while being set; corresponds to `Box<NodeConfig>`.
#[derive(Debug)]
pub struct ambit_node_options {
    _private: [u8; 0],
}

impl Castable for ambit_node_proxy {
    type Ownership = OwnershipBox;
    type RustType = Node;
}

impl Castable for ambit_node_options {
    type Ownership = OwnershipBox;
    type RustType = NodeConfig;
}

pub(crate) struct Node {
    proxy: Arc<NodeProxy>,
    handle: tokio::runtime::Handle,
}

/// New options for a node proxy named `node` (workloads whose `node` field equals it are
/// served), with the defaults above.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_options_new(
    node: ambit_str,
    out: *mut *mut ambit_node_options,
) -> ambit_result {
    ffi_panic_boundary!({
        let node = try_ambit_str!(node);
        let out = try_out!(out);
        let mut c = NodeConfig::new(node);
        c.socks5 = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        c.readiness = None;
        c.admin = None;
        c.metrics = None;
        // SAFETY: `out` checked non-NULL and writable per the contract.
        unsafe { *out = to_boxed_mut_ptr(c) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Sets the SOCKS5 listener for local workloads; NULL turns it off.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_options_set_socks5(
    options: *mut ambit_node_options,
    addr: *const ambit_socket_addr,
) -> ambit_result {
    set(options, addr, |c, a| c.socks5 = a)
}

/// Sets the HTTP CONNECT listener for local workloads; NULL turns it off.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_options_set_http_connect(
    options: *mut ambit_node_options,
    addr: *const ambit_socket_addr,
) -> ambit_result {
    set(options, addr, |c, a| c.http_connect = a)
}

/// Sets the Prometheus metrics listener (`/metrics`, `/stats/prometheus`); NULL turns it off.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_options_set_metrics(
    options: *mut ambit_node_options,
    addr: *const ambit_socket_addr,
) -> ambit_result {
    set(options, addr, |c, a| c.metrics = a)
}

/// Sets the readiness listener (`/healthz/ready`); NULL turns it off.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_options_set_readiness(
    options: *mut ambit_node_options,
    addr: *const ambit_socket_addr,
) -> ambit_result {
    set(options, addr, |c, a| c.readiness = a)
}

/// Sets the HBONE port bound on each local workload address (15008 normally; not 0).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_options_set_hbone_port(
    options: *mut ambit_node_options,
    port: u16,
) -> ambit_result {
    ffi_panic_boundary!({
        let c: &mut NodeConfig = try_mut_from_ptr!(options);
        if port == 0 {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        }
        c.inbound_port = port;
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Frees node options (they are copied at start, so this may follow the start). NULL is a
/// no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_options_free(options: *mut ambit_node_options) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or options from `ambit_node_options_new` freed once.
        unsafe { free_box(options) }
    })
}

fn set(
    options: *mut ambit_node_options,
    addr: *const ambit_socket_addr,
    apply: impl FnOnce(&mut NodeConfig, Option<std::net::SocketAddr>),
) -> ambit_result {
    ffi_panic_boundary!({
        let c: &mut NodeConfig = try_mut_from_ptr!(options);
        // SAFETY: `addr` is NULL or a readable address per the setter's contract.
        match unsafe { optional(addr) } {
            Ok(a) => {
                apply(c, a);
                ambit_result::AMBIT_RESULT_OK
            }
            Err(code) => code,
        }
    })
}

/// Starts a node proxy on `rt` from ztunnel-shaped local config YAML (`workloads`,
/// `services`, `policies`, `istioPolicies`), issuing workload certificates from `ca`, set up as
/// `options` says. BLOCKS until every listener is bound. Bad YAML is
/// `AMBIT_RESULT_CONFIG_INVALID` (`ambit_error_location` says where), a listener that cannot
/// bind `AMBIT_RESULT_IO`; details in `*err_out`.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_proxy_start(
    rt: *const ambit_runtime,
    config_yaml: ambit_str,
    ca: *const ambit_ca,
    options: *const ambit_node_options,
    out: *mut *mut ambit_node_proxy,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let yaml = try_ambit_str!(config_yaml).to_owned();
        let ca = try_clone_arc!(ca);
        let options: &NodeConfig = try_ref_from_ptr!(options);
        let out = try_out!(out);
        let (config, tls) = (options.clone(), rt.tls.clone());
        let start = async move { facade::run::node_proxy(config, &yaml, ca, tls).await };
        let wrap = |proxy, handle| Node {
            proxy: Arc::new(proxy),
            handle,
        };
        // SAFETY: `out` checked non-NULL; `err_out` NULL or writable per the contract.
        unsafe { give_started(rt, start, wrap, out, err_out) }
    })
}

/// Replaces the node proxy's config with new YAML. Invalid YAML changes nothing and returns
/// `AMBIT_RESULT_CONFIG_INVALID` (details in `*err_out`). Open connections the new policies
/// deny are closed.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_proxy_reload(
    node: *const ambit_node_proxy,
    config_yaml: ambit_str,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let node: &Node = try_ref_from_ptr!(node);
        let yaml = try_ambit_str!(config_yaml);
        let state = match facade::run::local_state(yaml, facade::run::CONFIG_TEXT) {
            Ok(s) => s,
            Err(e) => return fail(e, err_out),
        };
        let proxy = node.proxy.clone();
        let done = node.handle.block_on(node.handle.spawn(async move {
            proxy.sync(state).await;
        }));
        match done {
            Ok(()) => ambit_result::AMBIT_RESULT_OK,
            Err(e) => fail(
                Error::new(ambit_result::AMBIT_RESULT_PANIC, e.to_string()),
                err_out,
            ),
        }
    })
}

/// The node proxy's metrics in Prometheus text format, into `buf` (`*out_n` = length, or the
/// size needed).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_proxy_metrics(
    node: *const ambit_node_proxy,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let node: &Node = try_ref_from_ptr!(node);
        let out_n = try_out!(out_n);
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(node.proxy.metrics().as_bytes(), buf, len, out_n) }
    })
}

/// The address the SOCKS5 listener is bound to (`AMBIT_RESULT_NOT_FOUND` when it is off).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_proxy_socks5_addr(
    node: *const ambit_node_proxy,
    addr_out: *mut ambit_socket_addr,
) -> ambit_result {
    ffi_panic_boundary!({
        let node: &Node = try_ref_from_ptr!(node);
        let addr_out = try_out!(addr_out);
        let Some(a) = node.proxy.bound().socks5 else {
            return ambit_result::AMBIT_RESULT_NOT_FOUND;
        };
        // SAFETY: `addr_out` checked non-NULL and writable per the contract.
        unsafe { *addr_out = ambit_socket_addr::from_rust(a) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Stops the node proxy (inbound tunnels get up to 1 s to finish). NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_proxy_free(node: *mut ambit_node_proxy) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a node from `ambit_node_proxy_start` freed once.
        if let Some(n) = unsafe { take_box(node) } {
            let Node { proxy, handle } = *n;
            if let Ok(proxy) = Arc::try_unwrap(proxy) {
                let _ = handle.block_on(handle.spawn(proxy.shutdown(Duration::from_secs(1))));
            }
        }
    })
}
