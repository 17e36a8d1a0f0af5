//! The shared L4 case table (`testdata/authz/l4-cases.yaml`) through the policy engine.

use std::net::IpAddr;

use ambit_authz::{Connection, IstioPolicies, PolicySet, PolicyTarget};
use ambit_identity::SpiffeId;
use ambit_test_util::cases::{self, L4Case};

#[test]
fn shared_l4_table() {
    cases::check_all(&cases::l4(), |c| &c.name, run);
}

fn run(case: &L4Case) -> Result<(), String> {
    let mut set = PolicySet::new();
    let loaded = IstioPolicies::parse(&case.policies, "", set.root_namespace())
        .map_err(|e| e.to_string())?;
    loaded.apply_to(&mut set);
    let id = match case.connection.source.as_deref() {
        Some(p) => Some(SpiffeId::from_principal(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let conn = Connection {
        source_id: id.as_ref(),
        source_ip: case
            .connection
            .source_ip
            .unwrap_or(IpAddr::from([10, 0, 0, 1])),
        destination_ip: IpAddr::from([10, 0, 0, 2]),
        destination_port: case.connection.port,
    };
    let target = PolicyTarget {
        namespace: &case.workload.namespace,
        labels: &case.workload.labels,
        policy_keys: &[],
    };
    let d = set.evaluate(target, &conn);
    if d.allowed != case.expect.allow || d.policy != case.expect.policy {
        return Err(format!(
            "got {} (policy {:?}), want allow={} policy {:?}",
            d, d.policy, case.expect.allow, case.expect.policy
        ));
    }
    let got = d.dry_run.as_ref().map(|r| (r.allowed, r.policy.clone()));
    let want = case
        .expect
        .dry_run
        .as_ref()
        .map(|r| (r.allow, r.policy.clone()));
    if got != want {
        return Err(format!("dry run: got {got:?}, want {want:?}"));
    }
    Ok(())
}
