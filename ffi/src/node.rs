//! The node proxy (ztunnel behaviour) started, reloaded and stopped from a C host.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use facade::identity::{CaSource, SystemClock};
use facade::node::{NodeConfig, NodeProxy};
use facade::state::local;

use crate::error::{Error, ambit_error, ambit_result};
use crate::macros::{
    Castable, OwnershipBox, OwnershipRef, ffi_panic_boundary, take_box, to_boxed_mut_ptr,
    try_clone_arc, try_out, try_ref_from_ptr, try_str, write_out,
};
use crate::runtime::Runtime;

/// A running node proxy.
///
/// Thread-safe for reading metrics and reloading; corresponds to `Box<NodeProxy>`. Free it
/// before the runtime it was started on.
#[derive(Debug)]
pub struct ambit_node_proxy {
    _private: [u8; 0],
}

/// Where a node proxy listens. Each address is `ip:port` text (port 0 = any); a NULL/0-length
/// address turns that listener off.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ambit_node_listeners {
    /// SOCKS5 for local workloads.
    pub socks5: *const u8,
    /// Its length.
    pub socks5_len: usize,
    /// HTTP CONNECT for local workloads.
    pub http_connect: *const u8,
    /// Its length.
    pub http_connect_len: usize,
    /// Prometheus metrics.
    pub metrics: *const u8,
    /// Its length.
    pub metrics_len: usize,
    /// HBONE port bound on each local workload address (15008 normally).
    pub hbone_port: u16,
}

impl Castable for ambit_node_proxy {
    type Ownership = OwnershipBox;
    type RustType = Node;
}

impl Castable for ambit_node_listeners {
    type Ownership = OwnershipRef;
    type RustType = ambit_node_listeners;
}

pub(crate) struct Node {
    proxy: Arc<NodeProxy>,
    handle: tokio::runtime::Handle,
}

/// An optional `ip:port` field of an options struct: `None` when empty, `NULL_PARAMETER` for a
/// NULL pointer with a nonzero length, `INVALID_PARAMETER` for anything else not an address.
///
/// # Safety
/// `p` is NULL or valid for reading `n` bytes.
pub(crate) unsafe fn addr(p: *const u8, n: usize, what: &str) -> Result<Option<SocketAddr>, Error> {
    // SAFETY: forwarded from this function's contract.
    let Some(s) = (unsafe { field(p, n, what) })? else {
        return Ok(None);
    };
    s.parse().map(Some).map_err(|_| Error {
        code: ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
        message: format!("{what}: expected ip:port"),
    })
}

/// A text field of an options struct: `None` when empty, `NULL_PARAMETER` for a NULL pointer
/// with a nonzero length, `INVALID_PARAMETER` when not UTF-8.
///
/// # Safety
/// `p` is NULL or valid for reading `n` bytes.
pub(crate) unsafe fn field<'a>(
    p: *const u8,
    n: usize,
    what: &str,
) -> Result<Option<&'a str>, Error> {
    if n == 0 {
        return Ok(None);
    }
    if p.is_null() {
        return Err(Error {
            code: ambit_result::AMBIT_RESULT_NULL_PARAMETER,
            message: format!("{what}: NULL with a nonzero length"),
        });
    }
    // SAFETY: non-NULL with `n` readable bytes per this function's contract.
    let bytes = unsafe { std::slice::from_raw_parts(p, n) };
    std::str::from_utf8(bytes).map(Some).map_err(|_| Error {
        code: ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
        message: format!("{what}: not UTF-8"),
    })
}

pub(crate) fn fail(
    code: ambit_result,
    message: String,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    // SAFETY: `err_out` is NULL or writable per every caller's contract.
    unsafe { Error { code, message }.give(err_out) }
}

/// Ztunnel-shaped local config YAML, or `AMBIT_RESULT_CONFIG_INVALID` with the details given
/// through `err_out`.
pub(crate) fn parse_local(
    yaml: &str,
    err_out: *mut *mut ambit_error,
) -> Result<local::LoadedConfig, ambit_result> {
    local::parse(yaml, "<config>").map_err(|e| {
        fail(
            ambit_result::AMBIT_RESULT_CONFIG_INVALID,
            e.to_string(),
            err_out,
        )
    })
}

/// Starts a node proxy named `node` on `rt` from ztunnel-shaped local config YAML
/// (`workloads`, `services`, `policies`, `istioPolicies`), issuing workload certificates from
/// `ca`. BLOCKS until every listener is bound.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_node_proxy_start(
    rt: *const crate::runtime::ambit_runtime,
    config_yaml: *const u8,
    config_len: usize,
    node: *const u8,
    node_len: usize,
    ca: *const crate::runtime::ambit_ca,
    listeners: *const ambit_node_listeners,
    out: *mut *mut ambit_node_proxy,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let yaml = try_str!(config_yaml, config_len);
        let node = try_str!(node, node_len);
        let ca = try_clone_arc!(ca);
        let l = try_ref_from_ptr!(listeners);
        let out = try_out!(out);
        let cfg = match parse_local(yaml, err_out) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let mut config = NodeConfig::new(node);
        if l.hbone_port != 0 {
            config.inbound_port = l.hbone_port;
        }
        // SAFETY: each pointer/length pair is NULL or readable per `ambit_node_listeners`.
        let parsed = (|| unsafe {
            config.socks5 = addr(l.socks5, l.socks5_len, "socks5")?;
            config.http_connect = addr(l.http_connect, l.http_connect_len, "http_connect")?;
            config.metrics = addr(l.metrics, l.metrics_len, "metrics")?;
            Ok::<_, Error>(())
        })();
        if let Err(e) = parsed {
            // SAFETY: `err_out` is NULL or writable per the contract.
            return unsafe { e.give(err_out) };
        }
        config.readiness = None;
        config.admin = None;
        let source = Arc::new(CaSource::new(
            ca,
            Duration::from_secs(24 * 3600),
            Arc::new(SystemClock),
        ));
        let tls = rt.tls.clone();
        let start = NodeProxy::start(config, cfg.state, source, tls);
        let wrap = |proxy, handle| Node {
            proxy: Arc::new(proxy),
            handle,
        };
        // SAFETY: `out` checked non-NULL; `err_out` NULL or writable per the contract.
        unsafe { give_started(rt, start, wrap, out, err_out) }
    })
}

/// Runs a proxy's `start` on the runtime's workers and hands the outcome to C: the running
/// proxy, wrapped with the runtime's handle, through `out`; a failure to bind or load
/// credentials as `AMBIT_RESULT_IO` through `err_out`.
///
/// # Safety
/// `out` must be non-NULL and writable; `err_out` NULL or writable.
pub(crate) unsafe fn give_started<C, P, E>(
    rt: &Runtime,
    start: impl Future<Output = Result<P, E>> + Send + 'static,
    wrap: impl FnOnce(P, tokio::runtime::Handle) -> C::RustType,
    out: *mut *mut C,
    err_out: *mut *mut ambit_error,
) -> ambit_result
where
    C: Castable<Ownership = OwnershipBox>,
    P: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match crate::runtime::on_workers(&rt.rt, start) {
        Err(e) => fail(ambit_result::AMBIT_RESULT_PANIC, e, err_out),
        Ok(Ok(proxy)) => {
            let running = wrap(proxy, rt.rt.handle().clone());
            // SAFETY: `out` is non-NULL and writable per this function's contract.
            unsafe { *out = to_boxed_mut_ptr(running) };
            ambit_result::AMBIT_RESULT_OK
        }
        Ok(Err(e)) => fail(ambit_result::AMBIT_RESULT_IO, e.to_string(), err_out),
    }
}

/// Replaces the node proxy's config with new YAML. Invalid YAML changes nothing and returns
/// `AMBIT_RESULT_CONFIG_INVALID` (details in `*err_out`). Open connections the new policies
/// deny are closed.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_proxy_reload(
    node: *const ambit_node_proxy,
    config_yaml: *const u8,
    config_len: usize,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let node: &Node = try_ref_from_ptr!(node);
        let yaml = try_str!(config_yaml, config_len);
        let c = match parse_local(yaml, err_out) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let proxy = node.proxy.clone();
        let done = node.handle.block_on(node.handle.spawn(async move {
            proxy.sync(c.state).await;
        }));
        match done {
            Ok(()) => ambit_result::AMBIT_RESULT_OK,
            Err(_) => ambit_result::AMBIT_RESULT_PANIC,
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

/// The bound SOCKS5 address as `ip:port` text (`AMBIT_RESULT_INVALID_PARAMETER` if off).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_node_proxy_socks5_addr(
    node: *const ambit_node_proxy,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let node: &Node = try_ref_from_ptr!(node);
        let out_n = try_out!(out_n);
        let Some(a) = node.proxy.bound().socks5 else {
            return ambit_result::AMBIT_RESULT_INVALID_PARAMETER;
        };
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(a.to_string().as_bytes(), buf, len, out_n) }
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
