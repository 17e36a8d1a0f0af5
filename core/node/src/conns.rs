//! Live inbound connections, re-checked against policy whenever it changes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ambit_authz::Connection;
use ambit_identity::SpiffeId;
use ambit_state::State;
use tokio::sync::oneshot;
use tracing::info;

/// What an open inbound connection was authorized on.
#[derive(Debug)]
struct Open {
    source_id: Option<SpiffeId>,
    source_ip: IpAddr,
    destination_ip: IpAddr,
    destination_port: u16,
    workload_uid: String,
    close: Option<oneshot::Sender<String>>,
}

/// The registry. Entries remove themselves when their [`Registration`] drops.
#[derive(Debug, Default)]
pub(crate) struct Connections(Arc<Registry>);

#[derive(Debug, Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
}

/// Keeps a connection registered until dropped. It owns a handle on the registry (it borrows
/// nothing), so a tunnel's setup can hand it to the copy that outlives the setup.
pub(crate) struct Registration {
    id: u64,
    registry: Arc<Registry>,
}

impl Connections {
    /// Registers a connection; the receiver yields the reason if policy revokes it.
    pub(crate) fn register(
        &self,
        conn: &Connection<'_>,
        workload_uid: &str,
    ) -> (Registration, oneshot::Receiver<String>) {
        let (tx, rx) = oneshot::channel();
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Open {
                source_id: conn.source_id.cloned(),
                source_ip: conn.source_ip,
                destination_ip: conn.destination_ip,
                destination_port: conn.destination_port,
                workload_uid: workload_uid.to_owned(),
                close: Some(tx),
            },
        );
        (
            Registration {
                id,
                registry: self.0.clone(),
            },
            rx,
        )
    }

    /// Re-evaluates every open connection against `state`; closes those now denied (or whose
    /// workload is gone). Returns how many were closed.
    pub(crate) fn recheck(&self, state: &State) -> usize {
        let mut closed = 0;
        for open in self.lock().values_mut() {
            let Some(w) = state.workload(&open.workload_uid) else {
                if let Some(tx) = open.close.take() {
                    let _ = tx.send("destination workload removed".into());
                    closed += 1;
                }
                continue;
            };
            let conn = Connection {
                source_id: open.source_id.as_ref(),
                source_ip: open.source_ip,
                destination_ip: open.destination_ip,
                destination_port: open.destination_port,
            };
            let d = state.applicable_policies(w).evaluate(&conn);
            if !d.allowed
                && let Some(tx) = open.close.take()
            {
                info!(src.addr = %open.source_ip, dst.workload = %w.name, decision = %d, "connection closed due to policy change");
                let _ = tx.send(format!("connection closed due to policy change ({d})"));
                closed += 1;
            }
        }
        closed
    }

    /// Closes every open connection to workload `uid` (its pod was removed); returns how many.
    pub(crate) fn close_workload(&self, uid: &str, why: &str) -> usize {
        let mut closed = 0;
        for open in self.lock().values_mut() {
            if open.workload_uid == uid
                && let Some(tx) = open.close.take()
            {
                let _ = tx.send(format!("closed: pod {why}"));
                closed += 1;
            }
        }
        closed
    }

    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Open>> {
        self.0.lock()
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}
