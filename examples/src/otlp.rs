//! The daemons' OTLP export, configured by OpenTelemetry's standard environment variables so
//! that a collector set up for any OpenTelemetry SDK receives ambit's spans and access logs:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's gRPC endpoint; unset = no export | — |
//! | `OTEL_SERVICE_NAME` | `service.name` | the daemon's name |
//! | `OTEL_RESOURCE_ATTRIBUTES` | more resource attributes, `k=v,k=v` | — |
//! | `OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, `parentbased_traceidratio` | `always_on` |
//! | `OTEL_TRACES_SAMPLER_ARG` | the ratio, 0 to 1 | `1.0` |
//! | `OTEL_TRACES_EXPORTER`, `OTEL_LOGS_EXPORTER` | `otlp` or `none` | `otlp` |
//! | `OTEL_BSP_MAX_QUEUE_SIZE` | records queued per signal before they are dropped | 2048 |
//! | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | records per export | 512 |
//! | `OTEL_BSP_SCHEDULE_DELAY` | ms a record may wait for a batch | 1000 |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` | ms per export | 5000 |
//!
//! `k8s.node.name`, `k8s.pod.name` and `k8s.namespace.name` come from `NODE_NAME`,
//! `POD_NAME` and `POD_NAMESPACE`, `istio.mesh_id` from `ISTIO_META_MESH_ID`, when set.

use std::sync::Arc;
use std::time::Duration;

use ambit_proxy::otlp::{OtlpConfig, OtlpExporter};
use ambit_telemetry::Exporter;
use anyhow::{Context, Result, bail};

/// The OTLP config the environment asks for (`get` reads a variable), or `None` without an
/// endpoint. Every malformed value is an error naming its variable.
pub fn otlp_config(
    service: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<OtlpConfig>> {
    let Some(endpoint) = get("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let name = get("OTEL_SERVICE_NAME").unwrap_or_else(|| service.to_owned());
    let mut c = OtlpConfig::new(&endpoint, &name);
    for (var, key) in [
        ("NODE_NAME", "k8s.node.name"),
        ("POD_NAME", "k8s.pod.name"),
        ("POD_NAMESPACE", "k8s.namespace.name"),
        ("ISTIO_META_MESH_ID", "istio.mesh_id"),
    ] {
        if let Some(v) = get(var).filter(|v| !v.is_empty()) {
            c.resource.push((key.to_owned(), v));
        }
    }
    if let Some(attrs) = get("OTEL_RESOURCE_ATTRIBUTES") {
        for pair in attrs.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("OTEL_RESOURCE_ATTRIBUTES: {pair:?} is not key=value"))?;
            c.resource.retain(|(have, _)| have != k.trim());
            c.resource.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let ratio = match get("OTEL_TRACES_SAMPLER_ARG") {
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .with_context(|| {
                format!("OTEL_TRACES_SAMPLER_ARG: {v:?} is not a ratio from 0 to 1")
            })?,
        None => 1.0,
    };
    c.sample_rate = match get("OTEL_TRACES_SAMPLER").as_deref().unwrap_or("always_on") {
        "always_on" | "parentbased_always_on" => 1.0,
        "always_off" | "parentbased_always_off" => 0.0,
        "traceidratio" | "parentbased_traceidratio" => ratio,
        other => bail!(
            "OTEL_TRACES_SAMPLER: {other:?} is not supported (always_on, always_off, traceidratio, parentbased_traceidratio)"
        ),
    };
    c.traces = exporter_on(&get, "OTEL_TRACES_EXPORTER")?;
    c.logs = exporter_on(&get, "OTEL_LOGS_EXPORTER")?;
    if let Some(n) = number(&get, "OTEL_BSP_MAX_QUEUE_SIZE")? {
        c.queue = n as usize;
    }
    if let Some(n) = number(&get, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")? {
        c.batch = n as usize;
    }
    if let Some(ms) = number(&get, "OTEL_BSP_SCHEDULE_DELAY")? {
        c.interval = Duration::from_millis(ms);
    }
    if let Some(ms) = number(&get, "OTEL_EXPORTER_OTLP_TIMEOUT")? {
        c.timeout = Duration::from_millis(ms);
    }
    Ok(Some(c))
}

/// Starts the exporter the process environment asks for, on the current runtime.
pub fn otlp_from_env(service: &str) -> Result<Option<Arc<dyn Exporter>>> {
    let Some(config) = otlp_config(service, |k| std::env::var(k).ok())? else {
        return Ok(None);
    };
    let endpoint = config.endpoint.clone();
    let x = OtlpExporter::start(config)?;
    tracing::info!(%endpoint, "exporting spans and access logs over OTLP");
    Ok(Some(x))
}

fn exporter_on(get: &impl Fn(&str) -> Option<String>, var: &str) -> Result<bool> {
    match get(var).as_deref().unwrap_or("otlp") {
        "otlp" => Ok(true),
        "none" => Ok(false),
        other => bail!("{var}: {other:?} is not supported (otlp or none)"),
    }
}

fn number(get: &impl Fn(&str) -> Option<String>, var: &str) -> Result<Option<u64>> {
    get(var)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("{var}: {v:?} is not a positive whole number"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Option<OtlpConfig>> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        otlp_config("ambit-ztunnel", |k| env.get(k).cloned())
    }

    #[test]
    fn standard_variables_configure_the_exporter() {
        assert!(config(&[]).expect("ok").is_none());
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod, service.name=zt",
            ),
            ("NODE_NAME", "node-a"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
        ])
        .expect("ok")
        .expect("some");
        assert_eq!(c.endpoint, "http://collector:4317");
        assert_eq!(c.sample_rate, 0.25);
        assert!(c.traces && !c.logs);
        assert_eq!(c.queue, 16);
        let attr = |k: &str| {
            c.resource
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(attr("service.name"), Some("zt"));
        assert_eq!(attr("k8s.node.name"), Some("node-a"));
        assert_eq!(attr("deployment.environment"), Some("prod"));
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        for (var, value) in [
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_LOGS_EXPORTER", "console"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "-1"),
            ("OTEL_RESOURCE_ATTRIBUTES", "novalue"),
        ] {
            let e = config(&[base, (var, value)]).expect_err(var);
            assert!(format!("{e:#}").contains(var), "{var}: {e:#}");
        }
    }
}
