//! A UDP flow as a file descriptor: one end of a Unix `SOCK_SEQPACKET` socketpair, where each
//! message is one datagram, for hosts (the C ABI, Python sockets) that poll descriptors.

use std::io;
use std::os::fd::OwnedFd;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socketpair, sockopt};
use tokio::net::UnixDatagram;

use super::{MAX_UDP_PAYLOAD, UdpReceiver, UdpSender, UdpTunnel};

/// Room for this many full-size datagrams in each direction of the socketpair (as far as the
/// kernel's `wmem_max` allows) before more are dropped.
const QUEUED_DATAGRAMS: usize = 16;

/// Bridges `flow` to one end of a `SOCK_SEQPACKET` socketpair and returns the other (blocking,
/// close-on-exec). Each message written to it is sent as one datagram, each datagram received
/// is one message to read. Closing it, or `shutdown(SHUT_WR)`, ends the flow; a read of 0
/// bytes means the peer ended it, so empty datagrams are not carried either way. Datagrams
/// the host does not read in time are dropped, as UDP would. Call from inside a tokio runtime.
/// Why SEQPACKET: a datagram socketpair tells neither side that the other closed.
pub fn bridge_udp_to_socketpair(flow: UdpTunnel) -> io::Result<OwnedFd> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )?;
    for fd in [&ours, &theirs] {
        setsockopt(fd, sockopt::SndBuf, &(QUEUED_DATAGRAMS * MAX_UDP_PAYLOAD))?;
    }
    let theirs = std::os::unix::net::UnixStream::from(theirs);
    theirs.set_nonblocking(false)?;
    // A connected SEQPACKET socket takes send(2) and recv(2) as a datagram socket does: the
    // datagram type's methods are those calls, with the reactor's readiness.
    let ours = UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(ours))?;
    let (tx, rx) = flow.into_split();
    // The host learns of an error as the flow's end: a read of 0 bytes.
    tokio::spawn(async move { drop(pump(&ours, tx, rx).await) });
    Ok(theirs.into())
}

/// Moves datagrams between the socketpair and the flow until either ends.
async fn pump(host: &UnixDatagram, mut tx: UdpSender, mut rx: UdpReceiver) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD + 1];
    let result = loop {
        tokio::select! {
            got = host.recv(&mut buf) => match got {
                Ok(0) => break Ok(()),
                // Larger than a UDP payload (read truncated to the buffer): dropped.
                Ok(n) if n > MAX_UDP_PAYLOAD => {}
                Ok(n) => tx.send(&buf[..n]).await?,
                Err(e) => break Err(e),
            },
            d = rx.recv() => match d {
                // An empty message would read as the end.
                Ok(Some(d)) if d.is_empty() => {}
                Ok(Some(d)) => match host.try_send(&d) {
                    Ok(_) => {}
                    // The host is not reading: dropped, as UDP would.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => break Err(e),
                },
                Ok(None) => break Ok(()),
                Err(e) => {
                    tx.abort_on(&e);
                    return Err(e);
                }
            },
        }
    };
    let _ = tx.close().await;
    result
}
