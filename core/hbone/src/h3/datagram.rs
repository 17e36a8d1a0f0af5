//! HTTP/3 datagrams (RFC 9297) for CONNECT-UDP flows: one dispatcher per connection routes
//! each received datagram to its flow by stream id; a full or gone flow drops it, as UDP
//! would.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use quinn::{Connection, SendDatagramError};
use tokio::sync::mpsc;
use tracing::debug;

use crate::udp::codec;

/// Datagrams queued per flow before more are dropped.
const FLOW_QUEUE: usize = 256;

type Routes = Arc<Mutex<HashMap<u64, mpsc::Sender<Bytes>>>>;

/// The flows of one connection, by request stream id.
#[derive(Debug, Default)]
pub(crate) struct Router {
    routes: Routes,
}

/// Sends a flow's datagrams, once the peer's SETTINGS enable them.
#[derive(Debug)]
pub(crate) struct Outbound {
    quic: Connection,
    stream_id: u64,
    peer: tokio::sync::watch::Receiver<super::conn::PeerState>,
}

/// Receives a flow's datagrams; unregisters the flow when dropped.
#[derive(Debug)]
pub(crate) struct Inbound {
    rx: mpsc::Receiver<Bytes>,
    routes: Routes,
    stream_id: u64,
}

impl Router {
    /// Starts routing `quic`'s datagrams.
    pub(crate) fn start(&self, quic: Connection) {
        let routes = self.routes.clone();
        tokio::spawn(async move {
            while let Ok(d) = quic.read_datagram().await {
                match codec::parse_h3_datagram(d) {
                    Ok((id, Some(payload))) => {
                        // No flow (yet, or any more) or a full one: dropped. `try_send`
                        // never waits, so it runs under the lock (no sender clone per packet).
                        if let Some(tx) = lock(&routes).get(&id) {
                            let _ = tx.try_send(payload);
                        }
                    }
                    Ok((_, None)) => {}
                    Err(codec::QUARTER_OUT_OF_RANGE) => {
                        let code = quinn::VarInt::from_u32(super::codec::code::H3_DATAGRAM_ERROR);
                        quic.close(code, b"quarter stream id out of range");
                        break;
                    }
                    Err(e) => debug!(error = %e, "dropped a malformed HTTP/3 datagram"),
                }
            }
        });
    }

    /// The datagram halves of the flow on request stream `stream_id`. Receiving starts at
    /// once (we enabled datagrams); sending waits for the peer's SETTINGS to enable them.
    pub(crate) fn flow(
        &self,
        quic: &Connection,
        peer: tokio::sync::watch::Receiver<super::conn::PeerState>,
        stream_id: u64,
    ) -> (Outbound, Inbound) {
        let (tx, rx) = mpsc::channel(FLOW_QUEUE);
        lock(&self.routes).insert(stream_id, tx);
        (
            Outbound {
                quic: quic.clone(),
                stream_id,
                peer,
            },
            Inbound {
                rx,
                routes: self.routes.clone(),
                stream_id,
            },
        )
    }
}

impl Outbound {
    /// Sends `payload` as a datagram; `false` when it must go on the stream instead (larger
    /// than a QUIC packet carries, or the peer has not enabled datagrams).
    pub(crate) fn send(&self, payload: &[u8]) -> io::Result<bool> {
        if !self.peer.borrow().settings.is_some_and(|s| s.datagram) {
            return Ok(false);
        }
        match self
            .quic
            .send_datagram(codec::h3_datagram(self.stream_id, payload))
        {
            Ok(()) => Ok(true),
            Err(
                SendDatagramError::TooLarge
                | SendDatagramError::UnsupportedByPeer
                | SendDatagramError::Disabled,
            ) => Ok(false),
            Err(SendDatagramError::ConnectionLost(e)) => {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, e))
            }
        }
    }
}

impl Inbound {
    pub(crate) async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        lock(&self.routes).remove(&self.stream_id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
