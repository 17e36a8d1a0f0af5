//! L4 authorization with 10,000 policies across 1,000 namespaces (plus mesh-wide ones): finding
//! the policies of one workload, and deciding one connection.

use std::hint::black_box;
use std::net::IpAddr;

use ambit_authz::{
    Action, Authorization, Clause, Connection, Labels, Match, PolicySet, PolicyTarget as Target,
    Rule, Scope, StringMatch,
};
use ambit_identity::SpiffeId;
use criterion::{Criterion, criterion_group, criterion_main};

fn policy(ns: usize, i: usize) -> Authorization {
    let mut m = Match::default();
    m.principals = vec![StringMatch::Exact(format!(
        "cluster.local/ns/ns-{ns}/sa/client-{i}"
    ))];
    m.destination_ports = vec![8000 + i as u16];
    m.source_ips = vec![format!("10.{}.{}.0/24", ns % 250, i).parse().expect("cidr")];
    let mut a = Authorization::new(
        format!("ns-{ns}"),
        format!("policy-{i}"),
        Scope::Namespace,
        if i.is_multiple_of(3) {
            Action::Deny
        } else {
            Action::Allow
        },
        vec![Rule {
            clauses: vec![Clause { matches: vec![m] }],
        }],
    );
    // Keep some policies selector-scoped, referenced by key.
    if i == 9 {
        a.scope = Scope::WorkloadSelector;
    }
    a
}

fn bench(c: &mut Criterion) {
    let mut set = PolicySet::new();
    for ns in 0..1000 {
        for i in 0..10 {
            set.insert(policy(ns, i));
        }
    }
    for i in 0..5 {
        let mut g = policy(0, i);
        g.name = format!("global-{i}");
        g.namespace = "istio-system".into();
        g.scope = Scope::Global;
        g.action = Action::Deny;
        set.insert(g);
    }
    assert_eq!(set.len(), 10_005);
    let labels = Labels::new();
    let keys = vec!["ns-500/policy-9".to_owned()];
    let target = Target {
        namespace: "ns-500",
        labels: &labels,
        policy_keys: &keys,
    };
    // Matches the last ALLOW policy of its namespace; every DENY is checked first and misses.
    let id = SpiffeId::parse("spiffe://cluster.local/ns/ns-500/sa/client-8").expect("id");
    let conn = Connection {
        source_id: Some(&id),
        source_ip: "10.0.8.7".parse::<IpAddr>().expect("ip"),
        destination_ip: "10.9.9.9".parse::<IpAddr>().expect("ip"),
        destination_port: 8008,
    };
    let applicable = set.applicable(target);
    let d = applicable.evaluate(&conn);
    assert!(d.allowed, "{d}");
    assert_eq!(d.policy.as_deref(), Some("ns-500/policy-8"));

    c.bench_function("authz_eval/decide_cached_workload", |b| {
        b.iter(|| black_box(&applicable).evaluate(black_box(&conn)))
    });
    c.bench_function("authz_eval/lookup_and_decide", |b| {
        b.iter(|| set.evaluate(black_box(target), black_box(&conn)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
