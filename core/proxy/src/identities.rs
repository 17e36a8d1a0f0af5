//! Workload credentials on demand: one [`CredentialCell`] per identity, renewed in the
//! background by a [`CredentialManager`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ambit_identity::{Clock, CredentialManager, CredentialSource, SpiffeId, SystemClock};
use ambit_tls::{CredentialCell, TlsContext};
use tracing::warn;

use crate::ProxyError;

/// Hands out live credentials for the workloads a node proxy impersonates.
#[derive(Debug)]
pub struct Identities {
    tls: TlsContext,
    manager: Arc<CredentialManager>,
    cells: Mutex<HashMap<SpiffeId, Arc<CredentialCell>>>,
}

impl Identities {
    /// Starts the renewal task on the current runtime.
    pub fn new(tls: TlsContext, source: Arc<dyn CredentialSource>) -> Arc<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let manager = CredentialManager::new(source, clock);
        tokio::spawn(manager.clone().run());
        Arc::new(Self {
            tls,
            manager,
            cells: Mutex::new(HashMap::new()),
        })
    }

    /// The TLS context the credentials are loaded into.
    pub fn tls(&self) -> &TlsContext {
        &self.tls
    }

    /// The live credentials of `id`, fetched on first use.
    pub async fn cell(&self, id: &SpiffeId) -> Result<Arc<CredentialCell>, ProxyError> {
        if let Some(c) = self.lock().get(id) {
            return Ok(c.clone());
        }
        let updates = self
            .manager
            .subscribe(id)
            .await
            .map_err(|e| ProxyError::Credentials(format!("{id}: {e}")))?;
        let cell = self
            .tls
            .credential_cell(&updates.borrow())
            .map_err(|e| ProxyError::Credentials(format!("{id}: {e}")))?;
        let mut cells = self.lock();
        if let Some(c) = cells.get(id) {
            return Ok(c.clone());
        }
        let id_for_log = id.clone();
        tokio::spawn(cell.clone().follow(updates, move |e| {
            warn!(identity = %id_for_log, error = %e, "renewed certificate could not be loaded; keeping the old one");
        }));
        cells.insert(id.clone(), cell.clone());
        Ok(cell)
    }

    /// Every certificate held, with validity and renewal state.
    pub fn certificates(&self) -> Vec<ambit_identity::CertificateStatus> {
        self.manager.certificates()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SpiffeId, Arc<CredentialCell>>> {
        self.cells.lock().unwrap_or_else(|p| p.into_inner())
    }
}
