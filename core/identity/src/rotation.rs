//! Keeping credentials fresh: renewal at half-life, backoff on failure, publication to
//! subscribers (TLS configs swap them in for new handshakes).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::source::{CredentialError, CredentialSource};
use crate::spiffe::SpiffeId;
use crate::svid::Credentials;

/// First retry delay after a failed renewal.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between retries of a failed renewal.
pub const MAX_BACKOFF: Duration = Duration::from_secs(150);

/// Holds the credentials of every identity in use and renews each at half of its lifetime.
///
/// Subscribers get a [`watch::Receiver`] that always holds the newest credentials; an
/// existing valid certificate keeps being served while renewal fails and is retried with
/// exponential backoff (500 ms doubling to 150 s), as ztunnel does.
pub struct CredentialManager {
    source: Arc<dyn CredentialSource>,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<SpiffeId, Entry>>,
    changed: Notify,
}

struct Entry {
    tx: watch::Sender<Arc<Credentials>>,
    next: SystemTime,
    failures: u32,
    last_error: Option<CredentialError>,
}

/// What one [`CredentialManager::refresh_due`] pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefreshReport {
    /// Identities whose credentials were replaced.
    pub renewed: Vec<SpiffeId>,
    /// Identities fetched again with no change (file sources between rotations).
    pub unchanged: Vec<SpiffeId>,
    /// Identities whose renewal failed, with the error; retried later.
    pub failed: Vec<(SpiffeId, CredentialError)>,
}

/// One managed certificate, as [`CredentialManager::certificates`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateStatus {
    /// Whose.
    pub id: SpiffeId,
    /// Valid from.
    pub not_before: SystemTime,
    /// Valid until.
    pub not_after: SystemTime,
    /// When it is renewed next (half-life, or the next retry after a failure).
    pub next_refresh: SystemTime,
    /// Why the last renewal failed, if it did (the old certificate is still served).
    pub last_error: Option<String>,
}

// === impl CredentialManager ===

impl CredentialManager {
    /// A manager fetching from `source` and keeping time with `clock`.
    pub fn new(source: Arc<dyn CredentialSource>, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            source,
            clock,
            entries: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        })
    }

    /// Returns a subscription to `id`'s credentials, fetching them first if this is the first
    /// use of `id`.
    pub async fn subscribe(
        &self,
        id: &SpiffeId,
    ) -> Result<watch::Receiver<Arc<Credentials>>, CredentialError> {
        if let Some(e) = self.lock().get(id) {
            return Ok(e.tx.subscribe());
        }
        let creds = self.source.fetch(id).await?;
        let next = self.next_time(&creds, self.clock.now());
        let rx = {
            let mut entries = self.lock();
            // Another task may have fetched concurrently: keep the first, publish nothing new.
            let entry = entries.entry(id.clone()).or_insert_with(|| Entry {
                tx: watch::channel(Arc::new(creds)).0,
                next,
                failures: 0,
                last_error: None,
            });
            entry.tx.subscribe()
        };
        self.changed.notify_one();
        Ok(rx)
    }

    /// The current credentials of `id`, if it is managed.
    pub fn current(&self, id: &SpiffeId) -> Option<Arc<Credentials>> {
        self.lock().get(id).map(|e| e.tx.borrow().clone())
    }

    /// The last renewal error of `id`, cleared by the next success.
    pub fn last_error(&self, id: &SpiffeId) -> Option<CredentialError> {
        self.lock().get(id).and_then(|e| e.last_error.clone())
    }

    /// Stops managing `id`; subscribers keep the last value.
    pub fn forget(&self, id: &SpiffeId) {
        self.lock().remove(id);
    }

    /// Every managed identity's certificate: validity, next renewal, last renewal error.
    pub fn certificates(&self) -> Vec<CertificateStatus> {
        let mut out: Vec<CertificateStatus> = self
            .lock()
            .iter()
            .map(|(id, e)| {
                let creds = e.tx.borrow();
                CertificateStatus {
                    id: id.clone(),
                    not_before: creds.svid.not_before(),
                    not_after: creds.svid.not_after(),
                    next_refresh: e.next,
                    last_error: e.last_error.as_ref().map(ToString::to_string),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        out
    }

    /// The earliest time any identity is due for renewal.
    pub fn next_refresh(&self) -> Option<SystemTime> {
        self.lock().values().map(|e| e.next).min()
    }

    /// Renews every identity that is due by the clock now; publishes new credentials.
    pub async fn refresh_due(&self) -> RefreshReport {
        let now = self.clock.now();
        let due: Vec<SpiffeId> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.next <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut report = RefreshReport::default();
        for id in due {
            let result = self.source.fetch(&id).await;
            let now = self.clock.now();
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(&id) else {
                continue;
            };
            match result {
                Ok(creds) => {
                    entry.next = self.next_time(&creds, now);
                    entry.failures = 0;
                    entry.last_error = None;
                    if **entry.tx.borrow() == creds {
                        report.unchanged.push(id);
                    } else {
                        entry.tx.send_replace(Arc::new(creds));
                        report.renewed.push(id);
                    }
                }
                Err(e) => {
                    let backoff = INITIAL_BACKOFF
                        .saturating_mul(1u32 << entry.failures.min(16))
                        .min(MAX_BACKOFF);
                    entry.failures = entry.failures.saturating_add(1);
                    entry.next = now + backoff;
                    entry.last_error = Some(e.clone());
                    report.failed.push((id, e));
                }
            }
        }
        report
    }

    /// Runs renewals forever: sleeps (by the clock) until the next one is due, renews, repeats.
    /// Spawn it on the runtime of your choice; drop the task to stop.
    pub async fn run(self: Arc<Self>) {
        loop {
            let next = self.next_refresh();
            let wake = self.changed.notified();
            match next {
                Some(t) => {
                    tokio::select! {
                        () = self.clock.sleep_until(t) => {}
                        () = wake => continue,
                    }
                }
                None => {
                    wake.await;
                    continue;
                }
            }
            self.refresh_due().await;
        }
    }

    fn next_time(&self, creds: &Credentials, now: SystemTime) -> SystemTime {
        let refresh = creds.svid.refresh_at();
        match self.source.poll_interval() {
            Some(poll) => refresh.min(now + poll),
            None => refresh,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SpiffeId, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written (each write is a
        // single assignment), so a poisoned map is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for CredentialManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialManager")
            .field("source", &self.source)
            .field("identities", &self.lock().len())
            .finish_non_exhaustive()
    }
}
