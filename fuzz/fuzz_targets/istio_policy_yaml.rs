//! Istio AuthorizationPolicy / PeerAuthentication YAML (`IstioPolicies::parse`): no panic on
//! any text, and what loads goes into a `PolicySet` and decides a connection deterministically.
#![no_main]

use ambit_identity::SpiffeId;
use ambit_authz::{Connection, IstioPolicies, Labels, PolicySet, PolicyTarget as Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let Ok(loaded) = IstioPolicies::parse(s, "", "istio-system") else {
        return;
    };
    let mut set = PolicySet::new();
    loaded.apply_to(&mut set);
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/client").expect("id");
    for (policy, selector) in &loaded.authorizations {
        let labels = selector.clone().unwrap_or_else(Labels::new);
        let keys = [policy.key()];
        let target = Target {
            namespace: &policy.namespace,
            labels: &labels,
            policy_keys: &keys,
        };
        for source_id in [Some(&id), None] {
            let conn = Connection {
                source_id,
                source_ip: [10, 0, 0, 1].into(),
                destination_ip: [10, 0, 0, 2].into(),
                destination_port: 8080,
            };
            assert_eq!(set.evaluate(target, &conn), set.evaluate(target, &conn));
        }
    }
});
