//! `/config_dump`: the node's state, certificates and readiness as JSON, with the sections a
//! daemon adds.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Node;

/// A section a daemon adds to `/config_dump`, computed at each request.
pub type DumpSection = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The daemon's `/config_dump` sections.
#[derive(Default)]
pub(crate) struct DumpSections(std::sync::Mutex<BTreeMap<String, DumpSection>>);

impl std::fmt::Debug for DumpSections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_tuple("DumpSections").field(&names).finish()
    }
}

impl DumpSections {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DumpSection>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `/config_dump`: the real state serialised (workloads, services, policies with their keys),
/// the certificates held, readiness, and whatever the daemon adds (the xDS client's status).
pub(crate) fn config_dump(node: &Node) -> String {
    #[derive(serde::Serialize)]
    struct Dump<'a> {
        node: &'a str,
        ready: bool,
        pending: BTreeMap<String, String>,
        workloads: Vec<WorkloadDump<'a>>,
        services: Vec<&'a ambit_state::Service>,
        policies: Vec<PolicyDump<'a>>,
        certificates: Vec<CertDump>,
        open_connections: usize,
        #[serde(flatten)]
        extra: BTreeMap<String, serde_json::Value>,
    }
    #[derive(serde::Serialize)]
    struct WorkloadDump<'a> {
        identity: String,
        #[serde(flatten)]
        workload: &'a ambit_state::Workload,
    }
    #[derive(serde::Serialize)]
    struct PolicyDump<'a> {
        key: &'a str,
        #[serde(flatten)]
        policy: &'a ambit_authz::Authorization,
    }
    #[derive(serde::Serialize)]
    struct CertDump {
        identity: String,
        not_before: String,
        not_after: String,
        next_refresh: String,
        last_error: Option<String>,
    }
    let state = node.state.load();
    let mut workloads: Vec<WorkloadDump<'_>> = state
        .workloads()
        .map(|w| WorkloadDump {
            identity: w.identity().map(|i| i.to_string()).unwrap_or_default(),
            workload: w,
        })
        .collect();
    workloads.sort_by(|a, b| a.workload.uid.cmp(&b.workload.uid));
    let mut services: Vec<&ambit_state::Service> = state.services().map(|s| &**s).collect();
    services.sort_by_key(|s| s.key());
    let policies = state
        .policies()
        .keyed()
        .into_iter()
        .map(|(key, p)| PolicyDump { key, policy: p })
        .collect();
    let time = ambit_identity::format_time;
    let certificates = node
        .identities
        .certificates()
        .into_iter()
        .map(|c| CertDump {
            identity: c.id.to_string(),
            not_before: time(c.not_before),
            not_after: time(c.not_after),
            next_refresh: time(c.next_refresh),
            last_error: c.last_error,
        })
        .collect();
    let extra = node
        .dump_extra
        .lock()
        .iter()
        .map(|(k, f)| (k.clone(), f()))
        .collect();
    let pending = node.readiness.pending().into_iter().collect();
    let dump = Dump {
        node: &node.config.node,
        ready: node.readiness.is_ready(),
        pending,
        workloads,
        services,
        policies,
        certificates,
        open_connections: node.connections.len(),
        extra,
    };
    serde_json::to_string(&dump).unwrap_or_else(|e| format!("{{\"error\": \"config dump: {e}\"}}"))
}
