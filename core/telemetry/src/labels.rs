//! Istio's telemetry label sets and their Prometheus rendering.

use std::fmt::Write as _;

use crate::ResponseFlag;

/// Who reports a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client side (outbound node proxy).
    Source,
    /// The server side (inbound node proxy).
    Destination,
    /// A waypoint.
    Waypoint,
}

/// Istio's TCP label set. Empty values render as `unknown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TcpLabels {
    /// `reporter`.
    pub reporter: Option<Reporter>,
    /// `source_workload`.
    pub source_workload: String,
    /// `source_canonical_service` (also `source_app`).
    pub source_canonical_service: String,
    /// `source_canonical_revision` (also `source_version`).
    pub source_canonical_revision: String,
    /// `source_workload_namespace`.
    pub source_workload_namespace: String,
    /// `source_principal` (only from a verified certificate).
    pub source_principal: String,
    /// `source_cluster`.
    pub source_cluster: String,
    /// `destination_service` (hostname).
    pub destination_service: String,
    /// `destination_service_namespace`.
    pub destination_service_namespace: String,
    /// `destination_service_name`.
    pub destination_service_name: String,
    /// `destination_workload`.
    pub destination_workload: String,
    /// `destination_canonical_service` (also `destination_app`).
    pub destination_canonical_service: String,
    /// `destination_canonical_revision` (also `destination_version`).
    pub destination_canonical_revision: String,
    /// `destination_workload_namespace`.
    pub destination_workload_namespace: String,
    /// `destination_principal`.
    pub destination_principal: String,
    /// `destination_cluster`.
    pub destination_cluster: String,
    /// `response_flags`.
    pub response_flags: ResponseFlag,
    /// `connection_security_policy`: `mutual_tls` or `unknown`.
    pub mutual_tls: bool,
}

/// Istio's HTTP label set: the TCP labels plus the response code and protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HttpLabels {
    /// Everything the TCP metrics carry (`response_flags` included).
    pub peer: TcpLabels,
    /// `response_code`.
    pub response_code: u16,
    /// `request_protocol`: `grpc` when true, else `http`.
    pub grpc: bool,
}

pub(crate) fn render_labels(l: &TcpLabels, protocol: &str) -> String {
    let reporter = match l.reporter {
        Some(Reporter::Source) => "source",
        Some(Reporter::Destination) => "destination",
        Some(Reporter::Waypoint) => "waypoint",
        None => "unknown",
    };
    let flags = l.response_flags.as_str();
    let security = if l.mutual_tls {
        "mutual_tls"
    } else {
        "unknown"
    };
    let pairs: [(&str, &str); 23] = [
        ("reporter", reporter),
        ("source_workload", &l.source_workload),
        ("source_canonical_service", &l.source_canonical_service),
        ("source_canonical_revision", &l.source_canonical_revision),
        ("source_workload_namespace", &l.source_workload_namespace),
        ("source_principal", &l.source_principal),
        ("source_app", &l.source_canonical_service),
        ("source_version", &l.source_canonical_revision),
        ("source_cluster", &l.source_cluster),
        ("destination_service", &l.destination_service),
        (
            "destination_service_namespace",
            &l.destination_service_namespace,
        ),
        ("destination_service_name", &l.destination_service_name),
        ("destination_workload", &l.destination_workload),
        (
            "destination_canonical_service",
            &l.destination_canonical_service,
        ),
        (
            "destination_canonical_revision",
            &l.destination_canonical_revision,
        ),
        (
            "destination_workload_namespace",
            &l.destination_workload_namespace,
        ),
        ("destination_principal", &l.destination_principal),
        ("destination_app", &l.destination_canonical_service),
        ("destination_version", &l.destination_canonical_revision),
        ("destination_cluster", &l.destination_cluster),
        ("request_protocol", protocol),
        ("response_flags", flags),
        ("connection_security_policy", security),
    ];
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = if v.is_empty() { "unknown" } else { v };
        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
    }
    out
}

/// A Prometheus label value escaped (backslash, quote, newline).
pub(crate) fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
