//! HBONE as file descriptors: dial a tunnel and get one end of a socketpair bridged to it, or
//! listen and take accepted tunnels (ambit-hbone's `TunnelQueue`) the same way, from the host's
//! own poll loop.

use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

use facade::hbone::{Dial, QueuedTunnel, TunnelQueue};
use facade::identity::SpiffeId;
use facade::tls::ServerOptions;

use crate::addr::ambit_socket_addr;
use crate::error::{Error, ambit_error, ambit_result, fail};
use crate::ffi::{
    Castable, OwnershipBox, ffi_panic_boundary, take_box, to_boxed_mut_ptr, try_ambit_str,
    try_clone_arc, try_from, try_out, try_ref_from_ptr, write_out,
};
use crate::identity::ambit_credentials;
use crate::runtime::{Runtime, ambit_runtime, on_workers};
use crate::strings::ambit_str;

/// An HBONE server whose accepted tunnels wait (at most `backlog` of them) until the host takes
/// them as file descriptors.
///
/// Thread-safe; corresponds to `Box<Listener>`. Free it before the runtime it was made on.
#[derive(Debug)]
pub struct ambit_hbone_listener {
    _private: [u8; 0],
}

impl Castable for ambit_hbone_listener {
    type Ownership = OwnershipBox;
    type RustType = Listener;
}

pub(crate) struct Listener {
    queue: TunnelQueue,
    /// A tunnel taken from the queue whose values did not fit the caller's buffers: the next
    /// accept hands it out first.
    pending: Option<QueuedTunnel>,
    handle: tokio::runtime::Handle,
}

/// How long the connections of a freed listener may carry the tunnels already taken: as long
/// as they last (the host closes them).
const TAKEN_TUNNELS_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// How many accepted tunnels may wait for `ambit_hbone_listener_accept` when the host asks for
/// 0: a CONNECT beyond the backlog waits for room.
const DEFAULT_BACKLOG: usize = 64;

/// The HTTP version an HBONE tunnel is dialled over (`ambit_hbone_dial_transport`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ambit_transport {
    /// HTTP/2 over TCP and TLS: the Istio wire.
    AMBIT_TRANSPORT_HTTP2 = 0,
    /// HTTP/3 over QUIC on the peer's UDP port (an ambit extension), falling back to HTTP/2
    /// when the peer does not answer QUIC within 2 s.
    AMBIT_TRANSPORT_HTTP3 = 1,
}

/// Opens an HBONE tunnel to `authority` (`ip:port`) through the HBONE peer at `peer` (normally
/// port 15008), presenting `source`, accepting only a peer whose SPIFFE id is `expected_id`.
/// BLOCKS until the peer answers (or the 10 s connect timeout). On success `*fd_out` is one end
/// of a Unix socketpair carrying the tunnel: read/write it, `shutdown(SHUT_WR)` to half-close,
/// `close()` when done. A refused tunnel returns `AMBIT_RESULT_TUNNEL_REFUSED` with the HTTP
/// status in the error message. Over HTTP/2; see `ambit_hbone_dial_transport`.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_hbone_dial(
    rt: *const ambit_runtime,
    source: *const ambit_credentials,
    peer: *const ambit_socket_addr,
    expected_id: ambit_str,
    authority: ambit_str,
    fd_out: *mut i32,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ambit_hbone_dial_transport(
        rt,
        source,
        peer,
        expected_id,
        authority,
        ambit_transport::AMBIT_TRANSPORT_HTTP2 as u32,
        fd_out,
        err_out,
    )
}

/// As `ambit_hbone_dial`, over `transport` (an `ambit_transport` value; any other value is
/// `AMBIT_RESULT_INVALID_PARAMETER`).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_hbone_dial_transport(
    rt: *const ambit_runtime,
    source: *const ambit_credentials,
    peer: *const ambit_socket_addr,
    expected_id: ambit_str,
    authority: ambit_str,
    transport: u32,
    fd_out: *mut i32,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let args = DialArgs {
            rt,
            source,
            peer,
            expected_id,
            authority,
            transport,
        };
        dial_fd(args, fd_out, err_out, |client, dial| async move {
            let tunnel = client.connect(&dial).await.map_err(facade::Error::from)?;
            // On the runtime, where the bridge spawns its copy task.
            facade::hbone::bridge_to_socketpair(tunnel)
                .map(OwnedFd::from)
                .map_err(|e| Error::new(ambit_result::AMBIT_RESULT_IO, e.to_string()))
        })
    })
}

/// Opens a UDP flow (CONNECT-UDP, an ambit extension) to `target` (`ip:port`; names are
/// refused) through the HBONE peer at `peer`, as `ambit_hbone_dial_transport` opens a tunnel.
/// BLOCKS until the peer answers. Over HTTP/3 the datagrams travel as QUIC datagrams, over
/// HTTP/2 as capsules on the stream. On success `*fd_out` is one end of a Unix
/// `SOCK_SEQPACKET` socketpair: each message written is one datagram sent (at most 65,507
/// bytes), each message read is one received. Datagrams the host does not read in time are
/// dropped, as UDP would. A read of 0 bytes means the flow ended, so empty datagrams are not
/// carried. `close()` ends the flow; the flow has no idle timeout of its own.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ambit_hbone_dial_udp(
    rt: *const ambit_runtime,
    source: *const ambit_credentials,
    peer: *const ambit_socket_addr,
    expected_id: ambit_str,
    target: ambit_str,
    transport: u32,
    fd_out: *mut i32,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let args = DialArgs {
            rt,
            source,
            peer,
            expected_id,
            authority: target,
            transport,
        };
        dial_fd(args, fd_out, err_out, |client, dial| async move {
            let flow = client
                .connect_udp(&dial)
                .await
                .map_err(facade::Error::from)?;
            // On the runtime, where the bridge spawns its pump.
            facade::hbone::bridge_udp_to_socketpair(flow)
                .map_err(|e| Error::new(ambit_result::AMBIT_RESULT_IO, e.to_string()))
        })
    })
}

/// What the `ambit_hbone_dial*` functions take, unchecked.
struct DialArgs {
    rt: *const ambit_runtime,
    source: *const ambit_credentials,
    peer: *const ambit_socket_addr,
    expected_id: ambit_str,
    authority: ambit_str,
    transport: u32,
}

/// Checks `args`, runs `open` with the runtime's client and the dial on the runtime (BLOCKS),
/// and writes the descriptor it returns to `fd_out`.
fn dial_fd<F, Fut>(
    args: DialArgs,
    fd_out: *mut i32,
    err_out: *mut *mut ambit_error,
    open: F,
) -> ambit_result
where
    F: FnOnce(facade::hbone::Client, Dial) -> Fut,
    Fut: std::future::Future<Output = Result<OwnedFd, Error>> + Send + 'static,
{
    const H2: u32 = ambit_transport::AMBIT_TRANSPORT_HTTP2 as u32;
    const H3: u32 = ambit_transport::AMBIT_TRANSPORT_HTTP3 as u32;
    let DialArgs {
        rt,
        source,
        peer,
        expected_id,
        authority,
        transport,
    } = args;
    let transport = match transport {
        H2 => facade::hbone::Transport::Http2,
        H3 => facade::hbone::Transport::Http3,
        _ => {
            let e = Error::new(
                ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
                "transport must be AMBIT_TRANSPORT_HTTP2 or AMBIT_TRANSPORT_HTTP3",
            );
            return fail(e, err_out);
        }
    };
    let rt: &Runtime = try_ref_from_ptr!(rt);
    let cell = try_clone_arc!(source);
    let peer: &ambit_socket_addr = try_ref_from_ptr!(peer);
    let expected = try_ambit_str!(expected_id);
    let authority = try_ambit_str!(authority);
    let fd_out = try_out!(fd_out);
    let (Some(peer), Ok(expected), Ok(authority)) =
        (peer.to_rust(), SpiffeId::parse(expected), authority.parse())
    else {
        let e = Error::new(
            ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
            "peer must be an IPv4 or IPv6 address, expected id a SPIFFE id, authority host:port",
        );
        return fail(e, err_out);
    };
    let mut dial = Dial::new(cell, peer, vec![expected], authority);
    dial.transport = transport;
    match on_workers(&rt.rt, open(rt.client.clone(), dial)) {
        Ok(Ok(socket)) => {
            // SAFETY: `fd_out` checked non-NULL and writable per the contract.
            unsafe { *fd_out = socket.into_raw_fd() };
            ambit_result::AMBIT_RESULT_OK
        }
        Ok(Err(e)) => fail(e, err_out),
        Err(e) => fail(Error::new(ambit_result::AMBIT_RESULT_PANIC, e), err_out),
    }
}

/// Starts an HBONE server on `bind` (port 0 = any) presenting `server`. Every CONNECT is
/// accepted and waits (at most `backlog`, 0 = 64; beyond that new CONNECTs wait for room) until
/// `ambit_hbone_listener_accept` takes it; `ambit_hbone_listener_fd` polls readable while one
/// is waiting.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_hbone_listener_new(
    rt: *const ambit_runtime,
    server: *const ambit_credentials,
    bind: *const ambit_socket_addr,
    backlog: usize,
    out: *mut *mut ambit_hbone_listener,
    err_out: *mut *mut ambit_error,
) -> ambit_result {
    ffi_panic_boundary!({
        let rt: &Runtime = try_ref_from_ptr!(rt);
        let cell = try_clone_arc!(server);
        let bind: &ambit_socket_addr = try_ref_from_ptr!(bind);
        let out = try_out!(out);
        let Some(bind) = bind.to_rust() else {
            let e = Error::new(
                ambit_result::AMBIT_RESULT_INVALID_PARAMETER,
                "bind must be an IPv4 or IPv6 address",
            );
            return fail(e, err_out);
        };
        let config = match rt.tls.server_config(&cell, &ServerOptions::default()) {
            Ok(c) => c,
            Err(e) => return fail(facade::Error::from(e), err_out),
        };
        let backlog = if backlog == 0 {
            DEFAULT_BACKLOG
        } else {
            backlog
        };
        let bound = on_workers(&rt.rt, TunnelQueue::bind(bind, config, backlog));
        let queue = match bound {
            Ok(Ok(q)) => q,
            Ok(Err(e)) => {
                let e = Error::new(
                    ambit_result::AMBIT_RESULT_IO,
                    format!("cannot listen on {bind}: {e}"),
                );
                return fail(e, err_out);
            }
            Err(e) => return fail(Error::new(ambit_result::AMBIT_RESULT_PANIC, e), err_out),
        };
        let l = Listener {
            queue,
            pending: None,
            handle: rt.rt.handle().clone(),
        };
        // SAFETY: `out` checked non-NULL and writable per the contract.
        unsafe { *out = to_boxed_mut_ptr(l) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// A descriptor that polls readable while a tunnel is waiting (-1 for NULL). Do not read or
/// close it yourself.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_hbone_listener_fd(listener: *const ambit_hbone_listener) -> i32 {
    ffi_panic_boundary!(-1, {
        // SAFETY: NULL, or a live listener from `ambit_hbone_listener_new`.
        unsafe { try_from(listener) }.map_or(-1, |l: &Listener| l.queue.ready_fd().as_raw_fd())
    })
}

/// The address the listener is bound to.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_hbone_listener_local_addr(
    listener: *const ambit_hbone_listener,
    addr_out: *mut ambit_socket_addr,
) -> ambit_result {
    ffi_panic_boundary!({
        let l: &Listener = try_ref_from_ptr!(listener);
        let addr_out = try_out!(addr_out);
        // SAFETY: `addr_out` checked non-NULL and writable per the contract.
        unsafe { *addr_out = ambit_socket_addr::from_rust(l.queue.local_addr()) };
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Takes the next accepted tunnel without blocking: `*fd_out` gets its descriptor (yours to
/// close), the client's SPIFFE id and the requested authority go into the buffers (lengths in
/// `*peer_id_n`, `*authority_n`). Returns `AMBIT_RESULT_WOULD_BLOCK` when none is waiting. A
/// buffer too small for a value gets `AMBIT_RESULT_INSUFFICIENT_SIZE` with the sizes needed,
/// and the tunnel stays first in line.
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
        let l: &mut Listener = crate::ffi::try_mut_from_ptr!(listener);
        let fd_out = try_out!(fd_out);
        let peer_id_n = try_out!(peer_id_n);
        let authority_n = try_out!(authority_n);
        let next = l.pending.take().or_else(|| l.queue.try_accept());
        let Some(next) = next else {
            return ambit_result::AMBIT_RESULT_WOULD_BLOCK;
        };
        let id = next.peer_id.to_string();
        let authority = next.authority.to_string();
        if id.len() > peer_id_len || authority.len() > authority_len {
            // SAFETY: both checked non-NULL and writable.
            unsafe {
                *peer_id_n = id.len();
                *authority_n = authority.len();
            }
            l.pending = Some(next);
            return ambit_result::AMBIT_RESULT_INSUFFICIENT_SIZE;
        }
        // SAFETY: outputs checked non-NULL; buffers are large enough (checked above).
        unsafe {
            let _ = write_out(id.as_bytes(), peer_id_buf, peer_id_len, peer_id_n);
            let _ = write_out(
                authority.as_bytes(),
                authority_buf,
                authority_len,
                authority_n,
            );
            *fd_out = next.socket.into_raw_fd();
        }
        ambit_result::AMBIT_RESULT_OK
    })
}

/// Stops the listener: no new connections; tunnels not yet accepted are closed; tunnels already
/// taken keep working until they end. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn ambit_hbone_listener_free(listener: *mut ambit_hbone_listener) {
    ffi_panic_boundary!((), {
        // SAFETY: NULL, or a listener from `ambit_hbone_listener_new` freed once.
        if let Some(l) = unsafe { take_box(listener) } {
            let Listener { queue, handle, .. } = *l;
            let _ = handle.block_on(handle.spawn(async move {
                queue.close(TAKEN_TUNNELS_DEADLINE).await;
            }));
        }
    })
}
