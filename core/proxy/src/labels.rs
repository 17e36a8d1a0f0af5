//! Istio's telemetry labels from the workload state.

use ambit_state::{Service, Workload};
use ambit_telemetry::{Reporter, TcpLabels};

/// Istio labels from what the state knows about both ends: the source and destination
/// workloads and the destination service, each optional (unknown ends render `unknown`).
pub fn labels_for(
    reporter: Reporter,
    src: Option<&Workload>,
    dst: Option<&Workload>,
    svc: Option<&Service>,
) -> TcpLabels {
    let mut l = TcpLabels::default();
    l.reporter = Some(reporter);
    if let Some(s) = src {
        l.source_workload = s.workload_label().to_owned();
        l.source_canonical_service = s.canonical_name.clone();
        l.source_canonical_revision = s.canonical_revision.clone();
        l.source_workload_namespace = s.namespace.clone();
        l.source_cluster = s.cluster_id.clone();
    }
    if let Some(d) = dst {
        l.destination_workload = d.workload_label().to_owned();
        l.destination_canonical_service = d.canonical_name.clone();
        l.destination_canonical_revision = d.canonical_revision.clone();
        l.destination_workload_namespace = d.namespace.clone();
        l.destination_cluster = d.cluster_id.clone();
        l.destination_principal = d.identity().map(|i| i.to_string()).unwrap_or_default();
    }
    if let Some(s) = svc {
        l.destination_service = s.hostname.clone();
        l.destination_service_name = s.name.clone();
        l.destination_service_namespace = s.namespace.clone();
    }
    l
}
