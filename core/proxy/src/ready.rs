//! Readiness as a set of things still pending: a proxy is ready (`/healthz/ready` 200) when
//! none is left. The node proxy holds `certificates` while a local workload has none; a
//! daemon holds `xds` until the first control-plane sync is applied.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What a proxy still waits for before it is ready.
#[derive(Debug, Default)]
pub struct Readiness {
    pending: Mutex<BTreeMap<String, String>>,
}

impl Readiness {
    /// Readiness holding `gates` (`(name, detail)`) from the start, before any listener binds.
    pub fn with_gates(gates: &[(String, String)]) -> Self {
        let r = Self::default();
        for (name, detail) in gates {
            r.block(name, detail.clone());
        }
        r
    }

    /// Marks `what` as pending, with a detail for the 503 body (replacing an earlier one).
    pub fn block(&self, what: &str, detail: impl Into<String>) {
        self.lock().insert(what.to_owned(), detail.into());
    }

    /// Marks `what` as done.
    pub fn unblock(&self, what: &str) {
        self.lock().remove(what);
    }

    /// Whether nothing is pending.
    pub fn is_ready(&self) -> bool {
        self.lock().is_empty()
    }

    /// What is pending, by name, with details.
    pub fn pending(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The `/healthz/ready` answer: 200 `ready`, or 503 naming what is pending.
    pub fn reply(&self) -> crate::admin::Reply {
        let pending = self.pending();
        if pending.is_empty() {
            return (200, "text/plain", "ready\n".to_owned());
        }
        let mut body = String::from("not ready:\n");
        for (what, detail) in pending {
            body.push_str(&format!("- {what}: {detail}\n"));
        }
        (503, "text/plain", body)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::Readiness;

    #[test]
    fn ready_once_nothing_is_pending() {
        let r = Readiness::default();
        assert_eq!(r.reply().0, 200);
        r.block("xds", "waiting for the first sync");
        r.block("certificates", "2 local workloads without one");
        let (status, _, body) = r.reply();
        assert_eq!(status, 503);
        assert!(
            body.contains("xds: waiting") && body.contains("certificates: 2"),
            "{body}"
        );
        r.unblock("xds");
        assert!(!r.is_ready());
        r.unblock("certificates");
        assert!(r.is_ready());
    }

    #[test]
    fn gates_hold_from_construction() {
        let r = Readiness::with_gates(&[("xds".into(), "waiting for the first sync".into())]);
        let (status, _, body) = r.reply();
        assert_eq!(status, 503);
        assert!(body.contains("xds: waiting for the first sync"), "{body}");
        r.unblock("xds");
        assert!(r.is_ready());
    }
}
