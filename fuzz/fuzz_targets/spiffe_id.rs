//! `SpiffeId::parse`, `from_principal` and `TrustDomain::new` on arbitrary text: no panic, and
//! an accepted id is exactly its input, splits into trust domain and path, and rebuilds.
#![no_main]

use ambit_identity::{SCHEME_PREFIX, SpiffeId, TrustDomain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    let _ = TrustDomain::new(s);
    let _ = SpiffeId::from_principal(s);
    let Ok(id) = SpiffeId::parse(s) else { return };
    assert_eq!(id.as_str(), s);
    assert_eq!(
        format!("{SCHEME_PREFIX}{}{}", id.trust_domain_name(), id.path()),
        s
    );
    let td = id.trust_domain();
    assert_eq!(TrustDomain::new(td.as_str()).as_ref(), Ok(&td));
    assert_eq!(SpiffeId::from_principal(id.principal()).as_ref(), Ok(&id));
    if let (Some(ns), Some(sa)) = (id.namespace(), id.service_account()) {
        assert_eq!(id.path(), format!("/ns/{ns}/sa/{sa}"));
        assert_eq!(td.workload_id(ns, sa).as_ref(), Ok(&id));
    }
});
