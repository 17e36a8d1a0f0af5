//! A UDP flow as a file descriptor: one end of a Unix `SOCK_SEQPACKET` socketpair, where each
//! message is one datagram, for hosts (the C ABI) that poll descriptors.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, recv, send, setsockopt, socketpair, sockopt,
};
use tokio::io::unix::AsyncFd;

use facade::hbone::{MAX_UDP_PAYLOAD, UdpReceiver, UdpSender, UdpTunnel};

/// Room for this many full-size datagrams in each direction of the socketpair before more are
/// dropped, as a slow UDP reader's kernel would.
const QUEUED_DATAGRAMS: usize = 16;

/// Bridges `flow` to one end of a `SOCK_SEQPACKET` socketpair and returns the other (blocking,
/// close-on-exec). Each message written to it is sent as one datagram, each datagram received
/// is one message to read. Closing it, or `shutdown(SHUT_WR)`, ends the flow; a read of 0
/// bytes means the peer ended it, so empty datagrams are not carried either way. Datagrams
/// the host does not read in time are dropped, as UDP would. Call from inside a tokio runtime.
pub(crate) fn bridge_udp_to_socketpair(flow: UdpTunnel) -> io::Result<OwnedFd> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    for fd in [&ours, &theirs] {
        setsockopt(fd, sockopt::SndBuf, &(QUEUED_DATAGRAMS * MAX_UDP_PAYLOAD))?;
    }
    // SAFETY: the AsyncFd owns `ours` (an OwnedFd), so the descriptor stays open and the same
    // until the AsyncFd is dropped.
    let ours = unsafe { AsyncFd::register(ours) }.map_err(io::Error::from)?;
    let (tx, rx) = flow.into_split();
    // The host learns of an error as the flow's end: a read of 0 bytes.
    tokio::spawn(async move { drop(pump(&ours, tx, rx).await) });
    Ok(theirs)
}

/// Moves datagrams between the socketpair and the flow until either ends.
async fn pump(fd: &AsyncFd<OwnedFd>, mut tx: UdpSender, mut rx: UdpReceiver) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_UDP_PAYLOAD + 1];
    let result = loop {
        tokio::select! {
            ready = fd.readable() => {
                let mut guard = ready?;
                let got = guard.try_io(|fd| {
                    Ok(recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT)?)
                });
                match got {
                    Ok(Ok(0)) => break Ok(()),
                    // Larger than a UDP payload (read truncated to the buffer): dropped.
                    Ok(Ok(n)) if n > MAX_UDP_PAYLOAD => {}
                    Ok(Ok(n)) => tx.send(&buf[..n]).await?,
                    Ok(Err(e)) => break Err(e),
                    Err(_would_block) => {}
                }
            }
            d = rx.recv() => match d? {
                // An empty message would read as the end.
                Some(d) if d.is_empty() => {}
                Some(d) => {
                    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
                    match send(fd.as_raw_fd(), &d, flags) {
                        Ok(_) => {}
                        // The host is not reading: dropped, as UDP would.
                        Err(nix::errno::Errno::EAGAIN) => {}
                        Err(e) => break Err(e.into()),
                    }
                }
                None => break Ok(()),
            },
        }
    };
    let _ = tx.close().await;
    result
}
