//! The statistical checks: mirrored shares and weighted splits within binomial bounds.

use std::collections::BTreeMap;

use ambit_route::SplitMix64;
use ambit_test_util::conformance::{Case, Distribution};

use super::{DRAWS, Pods, Seen, Sent, World, decide, sent};

/// Mirrors: each listed backend gets a copy (every request, or its percentage of them within a
/// binomial bound), and no other backend does.
pub(super) fn check_mirrors(
    world: &World,
    s: &Sent,
    case: &Case,
    rng: &mut SplitMix64,
) -> Result<(), String> {
    let mut hits: BTreeMap<(String, String), u32> = BTreeMap::new();
    for _ in 0..DRAWS {
        let (_, f) = decide(world, s, false, &BTreeMap::new(), rng)?;
        let f = f.ok_or("mirrors expected, but the request was not forwarded")?;
        for m in f.mirrors() {
            *hits
                .entry((m.namespace.clone(), m.name.clone()))
                .or_default() += 1;
        }
    }
    let fallback = s
        .gateway
        .as_ref()
        .map_or(s.service.0.as_str(), |g| g.0.as_str());
    for want in &case.mirrored_to {
        let ns = want
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(fallback);
        let got = hits
            .remove(&(ns.to_owned(), want.name.clone()))
            .unwrap_or(0);
        let p = f64::from(want.percent.unwrap_or(100)) / 100.0;
        within(got, p, &format!("mirror to {ns}/{}", want.name))?;
    }
    if let Some(((ns, name), n)) = hits.into_iter().next() {
        return Err(format!(
            "{n} copies mirrored to {ns}/{name}, which is not expected"
        ));
    }
    Ok(())
}

/// `got` of [`DRAWS`] within 5 standard deviations of a Binomial(DRAWS, p) mean (exact at 0
/// and 1).
pub(super) fn within(got: u32, p: f64, what: &str) -> Result<(), String> {
    let n = f64::from(DRAWS);
    let mean = n * p;
    let bound = 5.0 * (n * p * (1.0 - p)).sqrt();
    if (f64::from(got) - mean).abs() > bound {
        return Err(format!(
            "{what}: {got} of {DRAWS}, want {mean:.0} ± {bound:.0}"
        ));
    }
    Ok(())
}

pub(super) fn check_distribution(
    world: &World,
    mesh: bool,
    d: &Distribution,
    pods: &Pods,
) -> Result<(), String> {
    let s = sent(
        world,
        &d.request,
        mesh,
        d.gateway.as_deref(),
        d.client_namespace.as_deref(),
        d.grpc.as_ref(),
    )?;
    let mut rng = SplitMix64::new(0x5eed);
    let mut hits: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..DRAWS {
        match decide(world, &s, mesh, &BTreeMap::new(), &mut rng)?.0 {
            Seen::Forwarded {
                namespace, service, ..
            } => {
                if !d.namespace.is_empty() && namespace != d.namespace {
                    return Err(format!(
                        "forwarded to namespace {namespace}, want {}",
                        d.namespace
                    ));
                }
                let pod = pods.only(&namespace, &service).ok_or_else(|| {
                    format!("{namespace}/{service} has pods of several Deployments")
                })?;
                *hits.entry(pod).or_default() += 1;
            }
            Seen::Answered { status, .. } => {
                return Err(format!("answered {status} instead of forwarding"));
            }
        }
    }
    for (backend, share) in &d.weights {
        within(
            hits.remove(backend).unwrap_or(0),
            *share,
            &format!("share of {backend}"),
        )?;
    }
    if let Some((b, n)) = hits.into_iter().next() {
        return Err(format!("{n} requests went to {b}, which has no weight"));
    }
    Ok(())
}
