//! ReferenceGrant enforcement: which of a rule's backendRefs and mirrors point at a Service in
//! another namespace that no grant there permits. Decided once per table build, so a request
//! only tests a bit.

use ambit_config::ConfigWarning;

use crate::model::{Backend, Parent, Route, Rule};

use super::Defs;

/// Bit masks of the refused backendRefs (bit k = `backendRefs[k]`) and mirrors (`[0]` the
/// rule's, `[k + 1]` backendRef k's), with a warning for each.
pub(super) fn refusals(
    route: &Route,
    rule: &Rule,
    defs: &Defs,
    warnings: &mut Vec<ConfigWarning>,
) -> (u32, Box<[u32]>) {
    let mut warn = |field: String, b: &Backend, what: &str| {
        warnings.push(ConfigWarning::new(
            &route.file,
            &format!("{} {}", route.kind.as_str(), route.key),
            &field,
            format!(
                "Service {}/{} is in another namespace and no ReferenceGrant in {} permits a {} \
                 from {} to use it (RefNotPermitted): {what}",
                b.namespace,
                b.name,
                b.namespace,
                route.kind.as_str(),
                route.namespace
            ),
        ));
    };
    let at = format!("spec.rules[{}]", rule.index);
    let mut backends = 0u32;
    let mut mirrors = Vec::with_capacity(rule.backends.len() + 1);
    mirrors.push(mirror_mask(route, &rule.filters.mirrors, defs, |b| {
        warn(format!("{at}.filters"), b, "it is not mirrored to")
    }));
    for (k, weighted) in rule.backends.iter().enumerate() {
        if let Some(b) = &weighted.backend
            && !permitted(route, b, defs)
        {
            backends |= 1 << k.min(31);
            warn(
                format!("{at}.backendRefs[{k}]"),
                b,
                "requests sent to it get 500",
            );
        }
        let field = format!("{at}.backendRefs[{k}].filters");
        mirrors.push(mirror_mask(route, &weighted.filters.mirrors, defs, |b| {
            warn(field.clone(), b, "it is not mirrored to")
        }));
    }
    (backends, mirrors.into())
}

fn mirror_mask(
    route: &Route,
    mirrors: &[crate::model::Mirror],
    defs: &Defs,
    mut warn: impl FnMut(&Backend),
) -> u32 {
    let mut mask = 0;
    for (i, m) in mirrors.iter().enumerate().take(32) {
        if !permitted(route, &m.backend, defs) {
            mask |= 1 << i;
            warn(&m.backend);
        }
    }
    mask
}

/// Whether `route` may send to `backend`: it is in the route's namespace, a ReferenceGrant in
/// its namespace permits it, or it is a Service the route is attached to (a GAMMA consumer
/// route sending on to the Service it overrides).
fn permitted(route: &Route, backend: &Backend, defs: &Defs) -> bool {
    if backend.namespace == route.namespace {
        return true;
    }
    let parent = route.parents.iter().any(|p| {
        matches!(p, Parent::Service { namespace, name, .. }
            if *namespace == backend.namespace && *name == backend.name)
    });
    parent
        || defs
            .grants
            .range(format!("{}/", backend.namespace)..)
            .take_while(|(k, _)| {
                k.split_once('/')
                    .is_some_and(|(ns, _)| ns == backend.namespace)
            })
            .any(|(_, g)| {
                g.spec
                    .permits_service(route.kind, &route.namespace, &backend.name)
            })
}
