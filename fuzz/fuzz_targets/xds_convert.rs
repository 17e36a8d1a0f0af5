//! What a control plane pushes (`ambit_xds::convert`): any bytes decoded as an
//! `istio.workload.Address` or `istio.security.Authorization` either convert or are refused
//! with an error naming a field; never a panic. What converts goes into a state and comes out
//! again, and the state answers for it in between.
#![no_main]

use ambit_authz::Connection;
use ambit_state::State;
use ambit_xds::convert::{self, Converted};
use ambit_xds::pb::istio::{security, workload};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let mut state = State::new();
    if kind % 2 == 0 {
        let Ok(a) = workload::Address::decode(bytes) else {
            return;
        };
        match convert::address(a) {
            Err(e) => assert!(!e.field.is_empty() || !e.message.is_empty()),
            Ok(Converted::Workload(w)) => {
                let uid = w.uid.clone();
                let (network, addresses) = (w.network.clone(), w.addresses.clone());
                state.upsert_workload(*w);
                for ip in &addresses {
                    let found = state.workload_by_addr(&network, *ip).map(|x| x.uid.clone());
                    assert_eq!(found.as_deref(), Some(uid.as_str()));
                }
                if let Some(w) = state.workload(&uid).cloned() {
                    let _ = w.identity();
                    let policies = state.applicable_policies(&w);
                    for ip in &w.addresses {
                        let conn = Connection {
                            source_id: None,
                            source_ip: *ip,
                            destination_ip: *ip,
                            destination_port: 8080,
                        };
                        assert_eq!(policies.evaluate(&conn), policies.evaluate(&conn));
                    }
                }
                assert!(state.remove_workload(&uid));
                assert!(state.workload(&uid).is_none());
                for ip in &addresses {
                    assert!(state.workload_by_addr(&network, *ip).is_none());
                }
            }
            Ok(Converted::Service(s)) => {
                let key = s.key();
                let vips = s.vips.clone();
                state.upsert_service(*s);
                for (net, ip) in &vips {
                    assert!(state.service_by_vip(net, *ip).is_some());
                }
                if let Some(svc) = state.service(&key).cloned() {
                    for port in svc.ports.keys() {
                        assert!(state.endpoints(&svc, *port).is_empty());
                    }
                }
                assert!(state.remove_service(&key));
            }
        }
    } else {
        let Ok(a) = security::Authorization::decode(bytes) else {
            return;
        };
        match convert::authorization(a) {
            Err(e) => assert!(!e.field.is_empty() || !e.message.is_empty()),
            Ok(p) => {
                let key = p.key();
                state.upsert_policy(&key, p);
                assert!(state.policies().get(&key).is_some());
                assert!(state.remove_policy(&key));
            }
        }
    }
});
