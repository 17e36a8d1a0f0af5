//! `ReferenceGrant` (v1beta1): which routes from other namespaces may use this namespace's
//! Services as backends.

use super::*;

/// At most this many `from` and `to` entries, as the CRD's validation allows.
const MAX_GRANT_ENTRIES: usize = 16;

// === impl Loader ===

impl Loader {
    pub(super) fn grant(&mut self, spec: Value, label: &str) -> Result<Grant, ConfigError> {
        let spec: wire::GrantSpec = self.report.decode(spec, label, "spec")?;
        for (field, len) in [("spec.from", spec.from.len()), ("spec.to", spec.to.len())] {
            if len == 0 {
                return Err(self.error(label, field, "needs at least one entry"));
            }
            if len > MAX_GRANT_ENTRIES {
                return Err(self.error(label, field, too_many(MAX_GRANT_ENTRIES)));
            }
        }
        let mut from = Vec::with_capacity(spec.from.len());
        for (i, f) in spec.from.into_iter().enumerate() {
            for (name, value) in [("kind", &f.kind), ("namespace", &f.namespace)] {
                if value.is_empty() {
                    return Err(self.error(
                        label,
                        &format!("spec.from[{i}].{name}"),
                        "must not be empty",
                    ));
                }
            }
            from.push((f.group, f.kind, f.namespace));
        }
        let mut to = Vec::with_capacity(spec.to.len());
        for (i, t) in spec.to.into_iter().enumerate() {
            if t.kind.is_empty() {
                return Err(self.error(label, &format!("spec.to[{i}].kind"), "must not be empty"));
            }
            to.push((t.group, t.kind, t.name.filter(|n| !n.is_empty())));
        }
        Ok(Grant { from, to })
    }
}
