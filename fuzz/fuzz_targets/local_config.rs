//! ztunnel-shaped local config YAML (`ambit_state::local::parse`): no panic on any text, and a
//! config that loads answers its own lookups and evaluates its policies deterministically.
#![no_main]

use ambit_authz::Connection;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let Ok(cfg) = ambit_state::local::parse(s, "fuzz.yaml") else {
        return;
    };
    let state = &cfg.state;
    for w in state.workloads() {
        let id = w.identity().ok();
        let policies = state.applicable_policies(w);
        for ip in &w.addresses {
            let found = state.workload_by_addr(&w.network, *ip).map(|x| &x.uid);
            assert_eq!(found, Some(&w.uid));
            let conn = Connection {
                source_id: id.as_ref(),
                source_ip: *ip,
                destination_ip: *ip,
                destination_port: 8080,
            };
            assert_eq!(policies.evaluate(&conn), policies.evaluate(&conn));
        }
    }
    for svc in state.services() {
        assert!(state.service_by_hostname(&svc.hostname).is_some());
        for (net, ip) in &svc.vips {
            assert!(state.service_by_vip(net, *ip).is_some());
        }
        for port in svc.ports.keys() {
            let _ = state.endpoints(svc, *port);
        }
    }
});
