//! L4 authorization decisions on structured input: policies (scopes, selectors, actions,
//! dry-run, names that collide and replace each other) plus one workload and one connection,
//! built from small vocabularies so that matches happen. Checks ztunnel's decision order
//! against the policies that apply (computed here, independently of `PolicySet`'s indexes):
//! any DENY match → deny; no ALLOW policy → allow; else allow iff an ALLOW matches; dry-run
//! never decides; the same question twice gets the same answer.
#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ambit_identity::SpiffeId;
use ambit_authz::{
    Action, Authorization, Clause, Connection, Labels, Match, PolicySet, Reason, Rule, Scope,
    ServiceAccountMatch, PolicyTarget, StringMatch,
};
use arbitrary::Arbitrary;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

const ROOT: &str = "istio-system";
const NAMESPACES: [&str; 3] = ["a", "b", ROOT];
const NAMES: [&str; 3] = ["p0", "p1", "p2"];
const ACCOUNTS: [&str; 2] = ["x", "y"];
const LABEL_KEYS: [&str; 2] = ["app", "tier"];
const WORDS: [&str; 7] = [
    "",
    "a",
    "x",
    "cluster.local",
    "cluster.local/ns/a/sa/x",
    "cluster.local/",
    "/sa/y",
];

#[derive(Arbitrary, Debug)]
struct Input {
    policies: Vec<Policy>,
    namespace: u8,
    labels: Vec<(u8, u8)>,
    keys: Vec<(u8, u8)>,
    source: Source,
    source_ip: Ip,
    destination_ip: Ip,
    port: Port,
}

#[derive(Arbitrary, Debug)]
struct Policy {
    name: u8,
    namespace: u8,
    scope: ScopeIn,
    deny: bool,
    dry_run: bool,
    rules: Vec<Vec<Vec<M>>>,
}

#[derive(Arbitrary, Debug)]
enum ScopeIn {
    Global,
    Namespace,
    /// Reachable only through the workload's policy keys.
    Keyed,
    Selector(Vec<(u8, u8)>),
}

#[derive(Arbitrary, Debug, Default)]
struct M {
    namespaces: Vec<Sm>,
    not_namespaces: Vec<Sm>,
    service_accounts: Vec<(u8, u8)>,
    not_service_accounts: Vec<(u8, u8)>,
    principals: Vec<Sm>,
    not_principals: Vec<Sm>,
    source_ips: Vec<(Ip, u8)>,
    not_source_ips: Vec<(Ip, u8)>,
    destination_ips: Vec<(Ip, u8)>,
    not_destination_ips: Vec<(Ip, u8)>,
    destination_ports: Vec<Port>,
    not_destination_ports: Vec<Port>,
}

#[derive(Arbitrary, Debug)]
enum Sm {
    Exact(Word),
    Prefix(Word),
    Suffix(Word),
    Presence,
}

#[derive(Arbitrary, Debug)]
enum Word {
    Known(u8),
    Namespace(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Ip {
    Near(u8),
    Mapped(u8),
    V4([u8; 4]),
    V6([u8; 16]),
}

#[derive(Arbitrary, Debug)]
enum Port {
    Known(bool),
    Any(u16),
}

#[derive(Arbitrary, Debug)]
enum Source {
    Plaintext,
    Istio {
        foreign: bool,
        namespace: u8,
        account: u8,
    },
    NotIstio,
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

impl Word {
    fn text(&self) -> String {
        match self {
            Word::Known(i) => pick(&WORDS, *i).into(),
            Word::Namespace(i) => pick(&NAMESPACES, *i).into(),
            Word::Any(s) => s.clone(),
        }
    }
}

impl Sm {
    fn build(&self) -> StringMatch {
        match self {
            Sm::Exact(w) => StringMatch::Exact(w.text()),
            Sm::Prefix(w) => StringMatch::Prefix(w.text()),
            Sm::Suffix(w) => StringMatch::Suffix(w.text()),
            Sm::Presence => StringMatch::Presence,
        }
    }
}

impl Ip {
    fn build(&self) -> IpAddr {
        match *self {
            Ip::Near(x) => Ipv4Addr::new(10, 0, 0, x % 4).into(),
            Ip::Mapped(x) => Ipv4Addr::new(10, 0, 0, x % 4).to_ipv6_mapped().into(),
            Ip::V4(o) => o.into(),
            Ip::V6(o) => o.into(),
        }
    }
}

impl Port {
    fn build(&self) -> u16 {
        match *self {
            Port::Known(b) => {
                if b {
                    8080
                } else {
                    9090
                }
            }
            Port::Any(p) => p,
        }
    }
}

fn labels(pairs: &[(u8, u8)]) -> Labels {
    pairs
        .iter()
        .map(|&(k, v)| (pick(&LABEL_KEYS, k).into(), pick(&NAMESPACES, v).into()))
        .collect()
}

fn nets(list: &[(Ip, u8)]) -> Vec<IpNet> {
    list.iter()
        .map(|(ip, len)| {
            let ip = ip.build();
            let max = if ip.is_ipv4() { 33 } else { 129 };
            IpNet::new(ip, len % max).expect("prefix in range")
        })
        .collect()
}

fn sas(list: &[(u8, u8)]) -> Vec<ServiceAccountMatch> {
    list.iter()
        .map(|&(n, a)| ServiceAccountMatch {
            namespace: pick(&NAMESPACES, n).into(),
            service_account: pick(&ACCOUNTS, a).into(),
        })
        .collect()
}

impl M {
    fn build(&self) -> Match {
        let s = |l: &[Sm]| l.iter().map(Sm::build).collect::<Vec<_>>();
        let p = |l: &[Port]| l.iter().map(Port::build).collect::<Vec<_>>();
        let mut m = Match::default();
        (m.namespaces, m.not_namespaces) = (s(&self.namespaces), s(&self.not_namespaces));
        (m.service_accounts, m.not_service_accounts) =
            (sas(&self.service_accounts), sas(&self.not_service_accounts));
        (m.principals, m.not_principals) = (s(&self.principals), s(&self.not_principals));
        (m.source_ips, m.not_source_ips) = (nets(&self.source_ips), nets(&self.not_source_ips));
        (m.destination_ips, m.not_destination_ips) =
            (nets(&self.destination_ips), nets(&self.not_destination_ips));
        (m.destination_ports, m.not_destination_ports) =
            (p(&self.destination_ports), p(&self.not_destination_ports));
        m
    }
}

fuzz_target!(|input: Input| {
    // Build the set, and by hand the live policies (a later policy replaces one of the same key).
    let mut set = PolicySet::new();
    let mut live: BTreeMap<String, (Authorization, Option<Labels>)> = BTreeMap::new();
    for p in &input.policies {
        let rules = p.rules.iter().map(|clauses| Rule {
            clauses: clauses
                .iter()
                .map(|ms| Clause {
                    matches: ms.iter().map(M::build).collect(),
                })
                .collect(),
        });
        let scope = match p.scope {
            ScopeIn::Global => Scope::Global,
            ScopeIn::Namespace => Scope::Namespace,
            ScopeIn::Keyed | ScopeIn::Selector(_) => Scope::WorkloadSelector,
        };
        let action = if p.deny { Action::Deny } else { Action::Allow };
        let (ns, name) = (pick(&NAMESPACES, p.namespace), pick(&NAMES, p.name));
        let mut auth = Authorization::new(ns, name, scope, action, rules.collect());
        auth.dry_run = p.dry_run;
        let selector = match &p.scope {
            ScopeIn::Selector(pairs) => Some(labels(pairs)),
            _ => None,
        };
        match &selector {
            Some(s) => set.insert_with_selector(auth.clone(), s.clone()),
            None => set.insert(auth.clone()),
        }
        live.insert(auth.key(), (auth, selector));
    }
    assert_eq!(set.len(), live.len());

    let namespace = pick(&NAMESPACES, input.namespace);
    let workload_labels = labels(&input.labels);
    let keys: Vec<String> = input
        .keys
        .iter()
        .map(|&(n, p)| format!("{}/{}", pick(&NAMESPACES, n), pick(&NAMES, p)))
        .collect();
    let target = PolicyTarget {
        namespace,
        labels: &workload_labels,
        policy_keys: &keys,
    };
    let id = match input.source {
        Source::Plaintext => None,
        Source::Istio {
            foreign,
            namespace,
            account,
        } => Some(format!(
            "spiffe://{}/ns/{}/sa/{}",
            if foreign { "other.td" } else { "cluster.local" },
            pick(&NAMESPACES, namespace),
            pick(&ACCOUNTS, account),
        )),
        Source::NotIstio => Some("spiffe://cluster.local/ns/a".into()),
    }
    .map(|s| SpiffeId::parse(&s).expect("valid id"));
    let conn = Connection {
        source_id: id.as_ref(),
        source_ip: input.source_ip.build(),
        destination_ip: input.destination_ip.build(),
        destination_port: input.port.build(),
    };

    // What applies to the workload: global, its namespace's, the ones it names, and the
    // selector policies of its namespace (or the root namespace) that its labels satisfy.
    let applies = |p: &Authorization, selector: &Option<Labels>| {
        keys.contains(&p.key())
            || match selector {
                Some(s) => {
                    (p.namespace == namespace || p.namespace == ROOT)
                        && s.iter().all(|(k, v)| workload_labels.get(k) == Some(v))
                }
                None => match p.scope {
                    Scope::Global => true,
                    Scope::Namespace => p.namespace == namespace,
                    Scope::WorkloadSelector => false,
                },
            }
    };
    let applicable: Vec<&Authorization> = live
        .values()
        .filter(|(p, s)| applies(p, s))
        .map(|(p, _)| p)
        .collect();
    let matching = |action: Action, dry_run: bool| -> Vec<String> {
        applicable
            .iter()
            .filter(|p| p.action == action && p.dry_run == dry_run && p.matches(&conn))
            .map(|p| p.key())
            .collect()
    };
    let any_allow = applicable
        .iter()
        .any(|p| p.action == Action::Allow && !p.dry_run);
    let (deny_matches, allow_matches) = (
        matching(Action::Deny, false),
        matching(Action::Allow, false),
    );
    let mut dry_run_matches = matching(Action::Deny, true);
    dry_run_matches.extend(matching(Action::Allow, true));
    dry_run_matches.sort();

    let per_workload = set.applicable(target);
    assert_eq!(per_workload.len(), applicable.len());
    let d = set.evaluate(target, &conn);
    assert_eq!(d, set.evaluate(target, &conn), "same question, same answer");
    assert_eq!(d, per_workload.evaluate(&conn));
    let mut reported = d.dry_run_matches.clone();
    reported.sort();
    assert_eq!(reported, dry_run_matches);
    let decider = d.policy.clone().unwrap_or_default();
    if !deny_matches.is_empty() {
        assert!(
            !d.allowed && d.reason == Reason::DeniedByPolicy,
            "a DENY matched: {d:?}"
        );
        assert!(
            deny_matches.contains(&decider),
            "{d:?} not one of {deny_matches:?}"
        );
    } else if !any_allow {
        assert!(
            d.allowed && d.reason == Reason::NoAllowPolicies && d.policy.is_none(),
            "{d:?}"
        );
    } else if !allow_matches.is_empty() {
        assert!(d.allowed && d.reason == Reason::AllowedByPolicy, "{d:?}");
        assert!(
            allow_matches.contains(&decider),
            "{d:?} not one of {allow_matches:?}"
        );
    } else {
        assert!(
            !d.allowed && d.reason == Reason::NoAllowMatched && d.policy.is_none(),
            "{d:?}"
        );
    }
});
