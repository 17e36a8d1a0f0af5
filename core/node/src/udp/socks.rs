//! SOCKS5 UDP ASSOCIATE (RFC 1928 §7): a client on the TCP control connection asks for a
//! relay; each datagram it sends there names its destination in a SOCKS header, and each
//! destination gets its own CONNECT-UDP flow as the client's workload. The association ends
//! with the control connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::{CLIENT_QUEUE, Flow, forward_flow};
use crate::Node;

/// Destinations one association carries at once; datagrams to further ones are dropped.
const MAX_ASSOCIATION_FLOWS: usize = 64;

/// A SOCKS5 address (ATYP, address, port), as replies and datagram headers carry it.
pub(crate) fn encode_addr(a: SocketAddr, out: &mut Vec<u8>) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// Where a datagram goes and what it carries, parsed from a client's SOCKS UDP header;
/// `None` for a fragment, a malformed header or a name the mesh does not know (RFC 1928:
/// such datagrams are dropped silently).
fn parse_datagram<'a>(node: &Node, d: &'a [u8]) -> Option<(SocketAddr, &'a [u8])> {
    let (&[0, 0, frag, atyp], rest) = d.split_first_chunk::<4>()? else {
        return None;
    };
    if frag != 0 {
        return None;
    }
    let (ip, rest) = match atyp {
        1 => {
            let (b, rest) = rest.split_first_chunk::<4>()?;
            (IpAddr::from(*b), rest)
        }
        4 => {
            let (b, rest) = rest.split_first_chunk::<16>()?;
            (IpAddr::from(*b), rest)
        }
        3 => {
            let (&len, rest) = rest.split_first()?;
            let (name, rest) = rest.split_at_checked(usize::from(len))?;
            let name = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
            (crate::outbound::resolve(node, &name)?, rest)
        }
        _ => return None,
    };
    let (port, payload) = rest.split_first_chunk::<2>()?;
    Some((SocketAddr::new(ip, u16::from_be_bytes(*port)), payload))
}

/// Serves one association on `control` for the workload at `peer`. `hint` is the address the
/// client said it would send from (zeros when it does not know); datagrams from anywhere
/// else are dropped, and the first sender's port is held when the hint has none.
pub(crate) async fn associate(
    node: &Arc<Node>,
    mut control: TcpStream,
    peer: SocketAddr,
    hint: SocketAddr,
) -> std::io::Result<()> {
    let local = node
        .state
        .load()
        .workload_by_addr(&node.config.network, peer.ip())
        .is_some_and(|w| w.node == node.config.node);
    let bound = if local {
        UdpSocket::bind(SocketAddr::new(control.local_addr()?.ip(), 0)).await
    } else {
        Err(std::io::Error::other(format!(
            "source {} is not a workload on this node",
            peer.ip()
        )))
    };
    let socket = match bound {
        Ok(s) => Arc::new(s),
        Err(e) => {
            info!(%peer, error = %e, "SOCKS5 UDP association refused");
            let code = if local { 1 } else { 2 };
            control.write_all(&crate::outbound::reply(code)).await?;
            return Ok(());
        }
    };
    let mut reply = vec![5, 0, 0];
    encode_addr(socket.local_addr()?, &mut reply);
    control.write_all(&reply).await?;
    let mut client_port = (hint.port() != 0).then_some(hint.port());
    let mut flows: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut buf = vec![0u8; 65_535];
    let mut ctl = [0u8; 64];
    loop {
        tokio::select! {
            // The client sends nothing more on the control connection: any end of it, or
            // anything on it, ends the association.
            _ = control.read(&mut ctl) => break,
            r = socket.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(r) => r,
                    Err(e) => {
                        debug!(error = %e, "SOCKS5 UDP receive error");
                        continue;
                    }
                };
                if from.ip() != peer.ip() || client_port.is_some_and(|p| p != from.port()) {
                    debug!(%from, "SOCKS5 UDP datagram from outside the association dropped");
                    continue;
                }
                client_port = Some(from.port());
                let Some((target, payload)) = parse_datagram(node, &buf[..n]) else {
                    debug!(%from, "SOCKS5 UDP datagram with a header we cannot use dropped");
                    continue;
                };
                let payload = Bytes::copy_from_slice(payload);
                if let Some(q) = flows.get(&target).filter(|q| !q.is_closed()) {
                    // A full queue drops, as a congested path would.
                    let _ = q.try_send(payload);
                    continue;
                }
                flows.retain(|_, q| !q.is_closed());
                if flows.len() >= MAX_ASSOCIATION_FLOWS {
                    debug!(%target, "SOCKS5 UDP association at its flow limit; datagram dropped");
                    continue;
                }
                let (q, queued) = mpsc::channel(CLIENT_QUEUE);
                let _ = q.try_send(payload);
                flows.insert(target, q);
                let flow = Flow { source: peer.ip(), target, client: from, socks: true };
                let (node, socket) = (node.clone(), socket.clone());
                tokio::spawn(async move { forward_flow(&node, &socket, flow, queued).await });
            }
        }
    }
    // Closing the queues ends each flow, which then logs and counts itself.
    drop(flows);
    Ok(())
}
