//! The managed runtime: ambit owns tokio threads and hands the host file descriptors, so a C
//! host keeps its own poll/epoll loop. Tunnels are bridged to one end of a Unix socketpair.

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use facade::hbone::{
    Client, ClientSettings, ConnectRequest, Dial, Responder, Server, ServerSettings,
};
use facade::identity::{
    CertificateAuthority, Credentials, SpiffeId, Svid, TrustBundle, TrustDomain,
};
use facade::tls::{CredentialCell, Provider, ServerOptions, TlsContext};

use crate::error::{Error, ambit_error, ambit_result};
use crate::macros::{
    Castable, OwnershipArc, OwnershipBox, ffi_panic_boundary, free_arc, take_box, to_arc_const_ptr,
    to_boxed_mut_ptr, try_clone_arc, try_from, try_mut_from_ptr, try_out, try_ref_from_ptr,
    try_slice, try_str, write_out,
};

/// tokio worker threads owned by ambit, plus an HBONE client pool.
///
/// Thread-safe: share it between threads. Corresponds to `Box<Runtime>`; `ambit_runtime_free`
/// stops every task and must be called after everything created from it has been freed.
#[derive(Debug)]
pub struct ambit_runtime {
    _private: [u8; 0],
}

/// A workload's certificate, key and trust bundle.
///
/// Immutable and thread-safe; corresponds to `Arc<CredentialCell>`.
#[derive(Debug)]
pub struct ambit_credentials {
    _private: [u8; 0],
}

/// A built-in certificate authority (for tests and demos).
///
/// Immutable and thread-safe; corresponds to `Arc<CertificateAuthority>`.
#[derive(Debug)]
pub struct ambit_ca {
    _private: [u8; 0],
}

/// An HBONE server whose accepted tunnels are handed out as file descriptors.
///
/// Not safe for concurrent `accept` from several threads at once; corresponds to
/// `Box<Listener>`.
#[derive(Debug)]
pub struct ambit_hbone_listener {
    _private: [u8; 0],
}

impl Castable for ambit_runtime {
    type Ownership = OwnershipBox;
    type RustType = Runtime;
}

impl Castable for ambit_credentials {
    type Ownership = OwnershipArc;
    type RustType = CredentialCell;
}

impl Castable for ambit_ca {
    type Ownership = OwnershipArc;
    type RustType = CertificateAuthority;
}

impl Castable for ambit_hbone_listener {
    type Ownership = OwnershipBox;
    type RustType = Listener;
}

pub(crate) struct Runtime {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) tls: TlsContext,
    client: Client,
}

struct Accepted {
    fd: RawFd,
    peer_id: String,
    authority: String,
}

pub(crate) struct Listener {
    addr: SocketAddr,
    ready: Arc<Mutex<VecDeque<Accepted>>>,
    notify_read: UnixStream,
    task: tokio::task::JoinHandle<()>,
}

fn fail(code: ambit_result, message: String, err_out: *mut *mut ambit_error) -> ambit_result {
    // SAFETY: `err_out` is NULL or writable per every caller's contract.
    unsafe { Error { code, message }.give(err_out) }
}

/// Starts a runtime with `threads` worker threads (0 = one per core).
#[unsafe(no_mangle)]
pub extern "C" fn ambit_runtime_new(threads: u32, out: *mut *mut ambit_runtime) -> ambit_result {
    ffi_panic_boundary!({
        let out = try_out!(out);
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 0 {
            b.worker_threads(threads as usize);
        }
        // A C host has not ignored SIGPIPE as Rust programs do; writes to a closed socket would
        // kill it. Blocking the signal on ambit's own threads (never process-wide) turns them
        // into EPIPE errors. All socket I/O runs on these threads (see `on_workers`).
        b.on_thread_start(|| {
            use nix::sys::signal::{SigSet, Signal};
            let _ = SigSet::from(Signal::SIGPIPE).thread_block();
        });
        let Ok(rt) = b.enable_all().thread_name("ambit").build() else {
            return ambit_result::AMBIT_RESULT_IO;
        };
        let tls = TlsContext::new(Provider::default());
        let client = Client::new(tls.clone(), ClientSettings::default());
        let runtime = Runtime { rt, tls, client };
        // SAFETY: `out` checked non-NULL and writable per the contract.
        unsafe { *out = to_boxed_mut_ptr(runtime) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Stops the runtime's threads (waiting up to 1 s for tasks to end). NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_runtime_free(rt: *mut ambit_runtime) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a runtime from `ambit_runtime_new` freed once.
        if let Some(r) = unsafe { take_box(rt) } {
            r.rt.shutdown_timeout(Duration::from_secs(1));
        }
    })
}

/// Creates a built-in CA for `trust_domain`.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_ca_new(
    trust_domain: *const u8,
    trust_domain_len: usize,
    out: *mut *const ambit_ca,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let td = try_str!(trust_domain, trust_domain_len);
        let out = try_out!(out);
        let td = match TrustDomain::new(td) {
            Ok(t) => t,
            Err(e) => {
                return fail(
                    ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
                    format!("trust domain: {e}"),
                    err_out,
                );
            }
        };
        match CertificateAuthority::new(td) {
            Ok(ca) => {
                // SAFETY: `out` checked non-NULL and writable per the contract.
                unsafe { *out = to_arc_const_ptr(Arc::new(ca)) };
                ambit_result::AMBIT_RESULT_OK
            }
            Err(e) => fail(
                ambit_result::AMBIT_RESULT_CERT_INVALID,
                e.to_string(),
                err_out,
            ),
        }
    })
}

/// Releases a CA. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_ca_free(ca: *const ambit_ca) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a CA from `ambit_ca_new` released once.
        unsafe { free_arc(ca) }
    })
}

/// Issues credentials for SPIFFE id `id` valid for `ttl_seconds`, trusting the CA's root.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_ca_issue(
    rt: *const ambit_runtime,
    ca: *const ambit_ca,
    id: *const u8,
    id_len: usize,
    ttl_seconds: u64,
    out: *mut *const ambit_credentials,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let ca: &CertificateAuthority = try_ref_from_ptr!(ca);
        let id = try_str!(id, id_len);
        let out = try_out!(out);
        let Ok(id) = SpiffeId::parse(id) else {
            return fail(
                ambit_result::AMBIT_RESULT_INVALID_SPIFFE_ID,
                format!("{id:?} is not a SPIFFE id"),
                err_out,
            );
        };
        let creds = match ca.credentials(&id, Duration::from_secs(ttl_seconds.max(1))) {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    ambit_result::AMBIT_RESULT_CERT_INVALID,
                    e.to_string(),
                    err_out,
                );
            }
        };
        give_cell(rt, &creds, out, err_out)
    })
}

/// Loads credentials from PEM: chain (leaf first), PKCS#8/SEC1 key, and roots trusted for the
/// SVID's trust domain.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_credentials_from_pem(
    rt: *const ambit_runtime,
    chain_pem: *const u8,
    chain_len: usize,
    key_pem: *const u8,
    key_len: usize,
    bundle_pem: *const u8,
    bundle_len: usize,
    out: *mut *const ambit_credentials,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let chain = try_slice!(chain_pem, chain_len);
        let key = try_slice!(key_pem, key_len);
        let bundle = try_slice!(bundle_pem, bundle_len);
        let out = try_out!(out);
        let svid = match Svid::from_pem(chain, key) {
            Ok(s) => s,
            Err(e) => {
                return fail(
                    ambit_result::AMBIT_RESULT_CERT_MALFORMED,
                    e.to_string(),
                    err_out,
                );
            }
        };
        let bundle = match TrustBundle::from_pem(svid.id().trust_domain(), bundle) {
            Ok(b) => b,
            Err(e) => {
                return fail(
                    ambit_result::AMBIT_RESULT_CERT_MALFORMED,
                    format!("bundle: {e}"),
                    err_out,
                );
            }
        };
        give_cell(rt, &Credentials::new(svid, bundle), out, err_out)
    })
}

fn give_cell(
    rt: &Runtime,
    creds: &Credentials,
    out: *mut *const ambit_credentials,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    match rt.tls.credential_cell(creds) {
        Ok(cell) => {
            // SAFETY: `out` was checked non-NULL by the caller and is writable.
            unsafe { *out = to_arc_const_ptr(cell) };
            ambit_result::AMBIT_RESULT_OK
        }
        Err(e) => fail(
            ambit_result::AMBIT_RESULT_CERT_INVALID,
            e.to_string(),
            err_out,
        ),
    }
}

/// Releases credentials. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_credentials_free(creds: *const ambit_credentials) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or credentials made in this module, released once.
        unsafe { free_arc(creds) }
    })
}

/// Opens an HBONE tunnel to `authority` (`ip:port`) through the HBONE peer at `peer`
/// (`ip:port`, normally port 15008), presenting `source`, accepting only a peer whose SPIFFE id
/// is `expected_id`. BLOCKS until the peer answers (or the 10 s connect timeout). On success
/// `*fd_out` is one end of a Unix socketpair carrying the tunnel: read/write it, `shutdown
/// (SHUT_WR)` to half-close, `close()` when done. A refused tunnel returns
/// `AMBIT_RESULT_TUNNEL_REFUSED` with the HTTP status in the error message.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_hbone_dial(
    rt: *const ambit_runtime,
    source: *const ambit_credentials,
    peer: *const u8,
    peer_len: usize,
    expected_id: *const u8,
    expected_id_len: usize,
    authority: *const u8,
    authority_len: usize,
    fd_out: *mut i32,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let cell = try_clone_arc!(source);
        let peer = try_str!(peer, peer_len);
        let expected = try_str!(expected_id, expected_id_len);
        let authority = try_str!(authority, authority_len);
        let fd_out = try_out!(fd_out);
        let (Ok(peer), Ok(expected), Ok(authority)) = (
            peer.parse::<SocketAddr>(),
            SpiffeId::parse(expected),
            authority.parse(),
        ) else {
            return fail(
                ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
                "peer must be ip:port, expected id a SPIFFE id, authority host:port".into(),
                err_out,
            );
        };
        let dial = Dial::new(cell, peer, vec![expected], authority);
        let client = rt.client.clone();
        let tunnel = match on_workers(&rt.rt, async move { client.connect(&dial).await }) {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                let code = if e.status().is_some() {
                    ambit_result::AMBIT_RESULT_TUNNEL_REFUSED
                } else {
                    ambit_result::AMBIT_RESULT_TUNNEL_FAILED
                };
                return fail(code, e.to_string(), err_out);
            }
            Err(e) => return fail(ambit_result::AMBIT_RESULT_PANIC, e, err_out),
        };
        match bridge(&rt.rt, tunnel) {
            Ok(fd) => {
                // SAFETY: `fd_out` checked non-NULL and writable per the contract.
                unsafe { *fd_out = fd };
                ambit_result::AMBIT_RESULT_OK
            }
            Err(e) => fail(ambit_result::AMBIT_RESULT_IO, e.to_string(), err_out),
        }
    })
}

/// Runs `fut` on the runtime's worker threads and waits for it on the caller's thread, which
/// does no socket I/O itself (its signal mask is the host's).
pub(crate) fn on_workers<F>(rt: &tokio::runtime::Runtime, fut: F) -> Result<F::Output, String>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(rt.spawn(fut))
        .map_err(|e| format!("internal task failed: {e}"))
}

/// Connects a tunnel to one end of a new socketpair; returns the other end's descriptor.
fn bridge(rt: &tokio::runtime::Runtime, tunnel: facade::hbone::Tunnel) -> std::io::Result<RawFd> {
    let _guard = rt.enter();
    facade::hbone::bridge_to_socketpair(tunnel).map(IntoRawFd::into_raw_fd)
}

/// Starts an HBONE server on `bind` (`ip:port`, port 0 = any) presenting `server`. Every
/// CONNECT is accepted and queued; take them with `ambit_hbone_listener_accept` when
/// `ambit_hbone_listener_fd` polls readable.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_hbone_listener_new(
    rt: *const ambit_runtime,
    server: *const ambit_credentials,
    bind: *const u8,
    bind_len: usize,
    out: *mut *mut ambit_hbone_listener,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let cell = try_clone_arc!(server);
        let bind = try_str!(bind, bind_len);
        let out = try_out!(out);
        let Ok(bind) = bind.parse::<SocketAddr>() else {
            return fail(
                ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
                format!("{bind:?} is not ip:port"),
                err_out,
            );
        };
        let config = match rt.tls.server_config(&cell, &ServerOptions::default()) {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    ambit_result::AMBIT_RESULT_CERT_INVALID,
                    e.to_string(),
                    err_out,
                );
            }
        };
        let listener = match rt.rt.block_on(tokio::net::TcpListener::bind(bind)) {
            Ok(l) => l,
            Err(e) => {
                return fail(
                    ambit_result::AMBIT_RESULT_IO,
                    format!("cannot listen on {bind}: {e}"),
                    err_out,
                );
            }
        };
        let Ok(addr) = listener.local_addr() else {
            return ambit_result::AMBIT_RESULT_IO;
        };
        let Ok((notify_read, notify_write)) = UnixStream::pair() else {
            return ambit_result::AMBIT_RESULT_IO;
        };
        if notify_read.set_nonblocking(true).is_err() {
            return ambit_result::AMBIT_RESULT_IO;
        }
        let ready: Arc<Mutex<VecDeque<Accepted>>> = Arc::default();
        let queue = ready.clone();
        let notify = Arc::new(Mutex::new(notify_write));
        let handler = move |req: ConnectRequest, responder: Responder| {
            let queue = queue.clone();
            let notify = notify.clone();
            async move {
                let Ok(tunnel) = responder.accept(Default::default()) else {
                    return;
                };
                // Handlers run on the runtime, where the bridge spawns its copy task.
                let Ok(theirs) = facade::hbone::bridge_to_socketpair(tunnel) else {
                    return;
                };
                let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                q.push_back(Accepted {
                    fd: theirs.into_raw_fd(),
                    peer_id: req.peer_id.to_string(),
                    authority: req.authority.to_string(),
                });
                drop(q);
                let _ = notify
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write_all(&[1]);
            }
        };
        let server = Server::new(config, handler, ServerSettings::default());
        let task = rt.rt.spawn(async move {
            let _ = server.serve(listener).await;
        });
        let l = Listener {
            addr,
            ready,
            notify_read,
            task,
        };
        // SAFETY: `out` checked non-NULL and writable per the contract.
        unsafe { *out = to_boxed_mut_ptr(l) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// A descriptor that polls readable when a tunnel is waiting (-1 for NULL). Do not read or
/// close it yourself.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_hbone_listener_fd(listener: *const ambit_hbone_listener) -> i32 {
    ffi_panic_boundary!(-1, {
        use std::os::fd::AsRawFd;
        // SAFETY: NULL, or a live listener from `ambit_hbone_listener_new`.
        unsafe { try_from(listener) }.map_or(-1, |l: &Listener| l.notify_read.as_raw_fd())
    })
}

/// The address the listener is bound to, as `ip:port` text into `buf`.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_hbone_listener_local_addr(
    listener: *const ambit_hbone_listener,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let l: &Listener = try_ref_from_ptr!(listener);
        let out_n = try_out!(out_n);
        // SAFETY: `out_n` checked non-NULL; `buf`/`len` per the contract.
        unsafe { write_out(l.addr.to_string().as_bytes(), buf, len, out_n) }
    })
}

/// Takes the next accepted tunnel without blocking: `*fd_out` gets its descriptor (yours to
/// close), the client's SPIFFE id and the requested authority go into the buffers. Returns
/// `AMBIT_RESULT_WOULD_BLOCK` when none is waiting. If a buffer is too small the tunnel stays
/// queued and `AMBIT_RESULT_INSUFFICIENT_SIZE` is returned.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_hbone_listener_accept(
    listener: *mut ambit_hbone_listener,
    fd_out: *mut i32,
    peer_id_buf: *mut u8,
    peer_id_len: usize,
    peer_id_n: *mut usize,
    authority_buf: *mut u8,
    authority_len: usize,
    authority_n: *mut usize,
) -> ambit_result {
    ffi_panic_boundary!({
        let l: &mut Listener = try_mut_from_ptr!(listener);
        let fd_out = try_out!(fd_out);
        let peer_id_n = try_out!(peer_id_n);
        let authority_n = try_out!(authority_n);
        let mut q = l.ready.lock().unwrap_or_else(|p| p.into_inner());
        let Some(next) = q.front() else {
            return ambit_result::AMBIT_RESULT_WOULD_BLOCK;
        };
        if next.peer_id.len() > peer_id_len || next.authority.len() > authority_len {
            // SAFETY: both checked non-NULL and writable.
            unsafe {
                *peer_id_n = next.peer_id.len();
                *authority_n = next.authority.len();
            }
            return ambit_result::AMBIT_RESULT_INSUFFICIENT_SIZE;
        }
        let Some(next) = q.pop_front() else {
            return ambit_result::AMBIT_RESULT_WOULD_BLOCK;
        };
        drop(q);
        // Consume one notification byte; the queue, not the pipe, is the source of truth.
        let mut b = [0u8; 1];
        let _ = std::io::Read::read(&mut &l.notify_read, &mut b);
        // SAFETY: outputs checked non-NULL; buffers are large enough (checked above).
        unsafe {
            let _ = write_out(next.peer_id.as_bytes(), peer_id_buf, peer_id_len, peer_id_n);
            let _ = write_out(
                next.authority.as_bytes(),
                authority_buf,
                authority_len,
                authority_n,
            );
            *fd_out = next.fd;
        }
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Stops the listener; queued tunnels not yet accepted are closed. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_hbone_listener_free(listener: *mut ambit_hbone_listener) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a listener from `ambit_hbone_listener_new` freed once.
        if let Some(l) = unsafe { take_box(listener) } {
            l.task.abort();
            let mut q = l.ready.lock().unwrap_or_else(|p| p.into_inner());
            for a in q.drain(..) {
                use std::os::fd::FromRawFd;
                // SAFETY: each queued fd came from `into_raw_fd` and was never handed out, so
                // this is its only owner.
                drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(a.fd) });
            }
        }
    })
}
