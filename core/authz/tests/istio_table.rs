//! The shared L4 case table (`testdata/authz/l4-cases.yaml`) through the policy engine.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ambit_authz::{Connection, IstioPolicies, PolicySet, PolicyTarget};
use ambit_identity::SpiffeId;
use serde::Deserialize;

#[derive(Deserialize)]
struct Table {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    policies: String,
    workload: Workload,
    connection: Conn,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Workload {
    namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Conn {
    source: Option<String>,
    source_ip: Option<IpAddr>,
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    allow: bool,
    policy: Option<String>,
}

#[test]
fn shared_l4_table() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/authz/l4-cases.yaml"
    );
    let text = std::fs::read_to_string(path).expect("case table");
    let table: Table = serde_yaml_ng::from_str(&text).expect("case table parses");
    assert!(table.cases.len() >= 30, "only {} cases", table.cases.len());
    let mut failures = Vec::new();
    for case in &table.cases {
        let mut set = PolicySet::new();
        let loaded = IstioPolicies::parse(&case.policies, "", set.root_namespace())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        loaded.apply_to(&mut set);
        let id =
            case.connection.source.as_deref().map(|p| {
                SpiffeId::from_principal(p).unwrap_or_else(|e| panic!("{}: {e}", case.name))
            });
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
            failures.push(format!(
                "{}: got {} (policy {:?}), want allow={} policy {:?}",
                case.name, d, d.policy, case.expect.allow, case.expect.policy
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
