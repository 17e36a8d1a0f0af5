//! Load balancing across a service's endpoints.

use std::sync::Arc;

use ambit_state::Workload;

/// Weighted-random choice by `capacity` (0 counts as 1, as unset does in Istio); `None` when
/// there are no endpoints.
pub fn pick(endpoints: &[(Arc<Workload>, u16)]) -> Option<(Arc<Workload>, u16)> {
    let total: u64 = endpoints
        .iter()
        .map(|(w, _)| u64::from(w.capacity.max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = random_u64() % total;
    for (w, p) in endpoints {
        let c = u64::from(w.capacity.max(1));
        if r < c {
            return Some((w.clone(), *p));
        }
        r -= c;
    }
    endpoints.last().cloned()
}

/// A random number for load balancing (not for secrets): a thread-local generator seeded by
/// the OS, so a pick costs no system call (getrandom per pick was ~3.5% of waypoint CPU).
pub fn random_u64() -> u64 {
    fastrand::u64(..)
}
