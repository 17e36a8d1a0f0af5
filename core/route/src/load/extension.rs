//! ambit's extension kinds: `Fault` (Istio fault injection) and `LocalRateLimit`.

use super::*;

// === impl Loader ===

impl Loader {
    pub(super) fn fault(&mut self, spec: Value, label: &str) -> Result<Fault, ConfigError> {
        let spec: wire::FaultSpec = self.report.decode(spec, label, "spec")?;
        let delay = match spec.delay {
            None => None,
            Some(d) => {
                let Some(fixed) = d.fixed_delay else {
                    return Err(self.error(label, "spec.delay.fixedDelay", "missing"));
                };
                let fixed = duration::istio(&fixed)
                    .map_err(|m| self.error(label, "spec.delay.fixedDelay", m))?;
                let fraction = self.percentage(
                    d.percentage.as_ref(),
                    "spec.delay.percentage",
                    label,
                    "delayed",
                )?;
                Some((fixed, fraction))
            }
        };
        let abort = match spec.abort {
            None => None,
            Some(a) => match (a.http_status, a.grpc_status) {
                (Some(status), _) => {
                    let status = u16::try_from(status)
                        .ok()
                        .filter(|s| (200..=599).contains(s))
                        .and_then(|s| StatusCode::from_u16(s).ok())
                        .ok_or_else(|| {
                            self.error(
                                label,
                                "spec.abort.httpStatus",
                                format!("{status} is out of range 200-599"),
                            )
                        })?;
                    let fraction = self.percentage(
                        a.percentage.as_ref(),
                        "spec.abort.percentage",
                        label,
                        "aborted",
                    )?;
                    Some((status, fraction))
                }
                (None, Some(_)) => {
                    self.warn(
                        label,
                        "spec.abort.grpcStatus",
                        "gRPC aborts are not supported; the abort is ignored",
                    );
                    None
                }
                (None, None) => {
                    return Err(self.error(label, "spec.abort.httpStatus", "missing"));
                }
            },
        };
        if delay.is_none() && abort.is_none() {
            self.warn(
                label,
                "spec",
                "neither a delay nor an abort: this Fault does nothing",
            );
        }
        Ok(Fault { delay, abort })
    }

    /// Istio's `percentage: {value: 12.5}`, or a bare number. Absent means no request, as in
    /// Istio (and a warning, since it is rarely what was meant).
    pub(super) fn percentage(
        &mut self,
        v: Option<&Value>,
        at: &str,
        label: &str,
        what: &str,
    ) -> Result<Fraction, ConfigError> {
        let Some(v) = v else {
            self.warn(
                label,
                at,
                format!(
                    "no percentage: as in Istio, no request is {what} (set percentage: {{value: 100}})"
                ),
            );
            return Ok(Fraction::new(0, 1));
        };
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::Mapping(m) => m.get("value").and_then(Value::as_f64),
            _ => None,
        };
        match n {
            Some(p) if (0.0..=100.0).contains(&p) => Ok(Fraction::from_percent(p)),
            _ => Err(self.error(
                label,
                at,
                format!(
                    "{} is not a percentage 0-100 ({{value: 12.5}} or 12.5)",
                    yaml_text(v)
                ),
            )),
        }
    }

    pub(super) fn rate_limit(
        &mut self,
        spec: Value,
        label: &str,
    ) -> Result<RateLimit, ConfigError> {
        let spec: wire::RateLimitSpec = self.report.decode(spec, label, "spec")?;
        let count = |this: &Self, v: Option<i64>, field: &str| -> Result<u32, ConfigError> {
            v.and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    this.error(
                        label,
                        &format!("spec.{field}"),
                        match v {
                            None => "missing".to_owned(),
                            Some(n) => format!("{n} is not a positive count"),
                        },
                    )
                })
        };
        let max_tokens = count(self, spec.max_tokens, "maxTokens")?;
        let tokens_per_fill = count(self, spec.tokens_per_fill.or(Some(1)), "tokensPerFill")?;
        let Some(interval) = spec.fill_interval else {
            return Err(self.error(label, "spec.fillInterval", "missing"));
        };
        let fill_interval =
            duration::istio(&interval).map_err(|m| self.error(label, "spec.fillInterval", m))?;
        if fill_interval.is_zero() {
            return Err(self.error(label, "spec.fillInterval", "must be longer than 0s"));
        }
        Ok(RateLimit {
            max_tokens,
            tokens_per_fill,
            fill_interval,
        })
    }
}
