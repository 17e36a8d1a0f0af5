//! What a pod sends the DNS proxy (`ambit_node::dns`): any bytes are answered from the state,
//! refused with FORMERR, or forwarded; never a panic, and a local answer always encodes and
//! keeps the question's id.
#![no_main]

use std::sync::OnceLock;

use ambit_node::dns::{Answer, Asker, answer, format_error};
use ambit_state::{Service, State, Workload};
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut s = State::new();
        let mut svc = Service::new("reviews", "shop", "reviews.shop.svc.cluster.local");
        svc.vips = vec![
            (String::new(), "10.96.0.50".parse().expect("v4")),
            (String::new(), "fd96::50".parse().expect("v6")),
        ];
        s.insert_service(svc);
        s.insert_service(Service::new("db", "shop", "db.shop.svc.cluster.local"));
        let mut w = Workload::new("ext", "ext", "legacy", vec!["10.78.0.60".parse().expect("ip")]);
        w.hostname = "ext.corp.example".into();
        s.upsert_workload(w);
        s
    })
}

fuzz_target!(|data: &[u8]| {
    let asker = Asker {
        namespace: "shop".into(),
        network: String::new(),
    };
    match Message::from_vec(data) {
        Ok(req) => {
            if let Answer::Local(reply, _) = answer(state(), &asker, "cluster.local", &req) {
                assert_eq!(reply.metadata.id, req.metadata.id);
                let bytes = reply.to_vec().expect("a local answer encodes");
                assert!(Message::from_vec(&bytes).is_ok(), "and decodes again");
            }
        }
        Err(_) => {
            if let Some(bytes) = format_error(data) {
                assert_eq!(bytes[..2], data[..2], "FORMERR keeps the id");
            }
        }
    }
});
