//! What a node proxy reports of its connections: Istio's metrics, ambit's tunnel and UDP
//! counters, dry-run policy outcomes, and access records (logged and exported).

use ambit_telemetry::{ResponseFlag, TcpLabels};
use tracing::info;

use crate::{Node, record};

impl Node {
    /// Logs and counts a connection to `workload` from `peer` whose outcome dry-run policies
    /// would change (they are never enforced; this is how their effect is seen).
    pub(crate) fn report_dry_run(
        &self,
        d: &ambit_authz::Decision,
        workload: &ambit_state::Workload,
        peer: &str,
    ) {
        let Some(would) = d.dry_run.as_ref().filter(|w| w.allowed != d.allowed) else {
            return;
        };
        let policy = would.policy.as_deref().unwrap_or("");
        info!(
            workload = %workload.uid,
            peer,
            would = if would.allowed { "allow" } else { "deny" },
            policy = if policy.is_empty() { "-" } else { policy },
            enforced = %d,
            "dry-run authorization"
        );
        self.metrics.dry_run("destination", would.allowed, policy);
    }

    /// Counts a UDP flow that ended, with the payload bytes its record counted.
    pub(crate) fn count_udp(&self, direction: &'static str, ok: bool, log: &record::ConnLog) {
        self.udp_flows
            .inc(&[direction, if ok { "ok" } else { "failed" }]);
        let (to_source, to_destination) = log.by_end();
        self.udp_bytes
            .add(&[direction, "destination"], to_destination);
        self.udp_bytes.add(&[direction, "source"], to_source);
    }

    /// Counts an HBONE tunnel opened `direction` over `transport`.
    pub(crate) fn count_tunnel(&self, direction: &'static str, transport: ambit_hbone::Transport) {
        self.tunnels.inc(&[direction, transport.as_str()]);
    }

    /// Records a connection that failed before carrying data, with its response flag.
    pub(crate) fn count_failure(&self, labels: &mut TcpLabels, flag: ResponseFlag) {
        labels.response_flags = flag;
        let c = self.metrics.tcp(labels);
        c.opened();
        c.closed(true);
    }

    /// Writes a connection's access record: to the `access` log target at info, and to the
    /// exporter when there is one.
    pub(crate) fn access_log(&self, log: &record::ConnLog) {
        let logged = tracing::enabled!(target: "access", tracing::Level::INFO);
        if !logged && self.config.exporter.is_none() {
            // Nobody records it: the record's strings are not made at all.
            return;
        }
        let record = log.to_access_log();
        if let Some(x) = &self.config.exporter {
            log.export(&record, &**x);
        }
        if !logged {
            return;
        }
        let line = if self.config.json_access_log {
            record.to_json()
        } else {
            record.to_text()
        };
        info!(target: "access", "{line}");
    }
}
