//! `backendRefs[]`, `timeouts` and `retry`.

use super::*;

// === impl Loader ===

impl Loader {
    pub(super) fn backend(
        &mut self,
        b: wire::BackendRef,
        at: &str,
        ns: &str,
        label: &str,
    ) -> Result<WeightedBackend, ConfigError> {
        let weight = b.weight.unwrap_or(1);
        if !(0..=MAX_WEIGHT).contains(&weight) {
            return Err(self.error(
                label,
                &format!("{at}.weight"),
                format!("{weight} is out of range 0-{MAX_WEIGHT}"),
            ));
        }
        let set = self.filters(b.filters, at, ns, label, Level::Backend)?;
        let backend = self.service_ref(
            b.group.as_deref(),
            b.kind.as_deref(),
            b.name,
            b.namespace,
            b.port,
            ns,
            at,
            label,
        )?;
        if backend.is_none() {
            self.warn(
                label,
                at,
                "only Services are supported as backends; requests sent to this one get 500",
            );
        }
        Ok(WeightedBackend {
            backend,
            weight: weight as u32,
            filters: set.filters,
            fail_closed: set.fail_closed,
        })
    }

    /// A `BackendObjectReference` to a Service; `None` for any other kind.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn service_ref(
        &mut self,
        group: Option<&str>,
        kind: Option<&str>,
        name: String,
        namespace: Option<String>,
        port: Option<i64>,
        ns: &str,
        at: &str,
        label: &str,
    ) -> Result<Option<Backend>, ConfigError> {
        let port = match port {
            Some(p) => Some(self.port(p, label, &format!("{at}.port"))?),
            None => None,
        };
        if !matches!(
            (group.unwrap_or(""), kind.unwrap_or("Service")),
            ("", "Service")
        ) {
            return Ok(None);
        }
        if port.is_none() {
            self.warn(
                label,
                &format!("{at}.port"),
                "a Service backend needs a port; the port the request was sent to is used",
            );
        }
        Ok(Some(Backend {
            namespace: namespace.unwrap_or_else(|| ns.to_owned()),
            name,
            port,
        }))
    }

    pub(super) fn timeouts(
        &mut self,
        t: wire::Timeouts,
        at: &str,
        label: &str,
    ) -> Result<Timeouts, ConfigError> {
        let parse = |this: &Self, v: &Option<String>, field: &str| -> Result<_, ConfigError> {
            v.as_deref()
                .map(|s| {
                    duration::gateway(s).map_err(|m| this.error(label, &format!("{at}.{field}"), m))
                })
                .transpose()
        };
        let request = parse(self, &t.request, "request")?;
        let backend_request = parse(self, &t.backend_request, "backendRequest")?;
        if let (Some(r), Some(b)) = (request, backend_request)
            && !r.is_zero()
            && b > r
        {
            return Err(self.error(
                label,
                &format!("{at}.backendRequest"),
                format!(
                    "backendRequest ({}) cannot be longer than request ({})",
                    t.backend_request.as_deref().unwrap_or_default(),
                    t.request.as_deref().unwrap_or_default()
                ),
            ));
        }
        let enabled = |d: Option<Duration>| d.filter(|d| !d.is_zero());
        Ok(Timeouts {
            request: enabled(request),
            backend_request: enabled(backend_request),
        })
    }

    pub(super) fn retry(
        &mut self,
        r: wire::Retry,
        at: &str,
        label: &str,
    ) -> Result<Retry, ConfigError> {
        let mut codes = Vec::with_capacity(r.codes.len());
        for (i, c) in r.codes.iter().enumerate() {
            let field = format!("{at}.codes[{i}]");
            let code = u16::try_from(*c)
                .ok()
                .filter(|c| (400..=599).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| self.error(label, &field, format!("{c} is out of range 400-599")))?;
            if codes.contains(&code) {
                return Err(self.error(label, &field, format!("{c} is listed twice")));
            }
            codes.push(code);
        }
        let attempts = match r.attempts {
            None => 2,
            Some(a) => u32::try_from(a).map_err(|_| {
                self.error(
                    label,
                    &format!("{at}.attempts"),
                    format!("{a} is not a number of attempts (0 or more)"),
                )
            })?,
        };
        let backoff = match r.backoff.as_deref() {
            None => None,
            Some(s) => Some(
                duration::gateway(s).map_err(|m| self.error(label, &format!("{at}.backoff"), m))?,
            ),
        };
        Ok(Retry {
            attempts,
            codes,
            backoff,
        })
    }
}
