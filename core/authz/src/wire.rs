//! The wire shapes of an Istio `AuthorizationPolicy` rule's `from` and `to` entries, shared by
//! the L4 translator (`istio.rs`) and the L7 compiler (`l7/compile.rs`). Every field of the
//! Istio API is listed (supported or not), so that the one unknown-field rule of
//! [`ambit_config::Report::decode`] only ever flags real mistakes.

use serde::{Deserialize, Serialize};

/// `rules[].from[]`.
#[derive(Deserialize, Serialize)]
pub(crate) struct FromEntry {
    #[serde(default)]
    pub(crate) source: Source,
}

/// `rules[].to[]`.
#[derive(Deserialize, Serialize)]
pub(crate) struct ToEntry {
    #[serde(default)]
    pub(crate) operation: Operation,
}

/// `Source` (field numbers in the reference, §4.4).
#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Source {
    #[serde(default)]
    pub(crate) principals: Vec<String>,
    #[serde(default)]
    pub(crate) not_principals: Vec<String>,
    #[serde(default)]
    pub(crate) request_principals: Vec<String>,
    #[serde(default)]
    pub(crate) not_request_principals: Vec<String>,
    #[serde(default)]
    pub(crate) namespaces: Vec<String>,
    #[serde(default)]
    pub(crate) not_namespaces: Vec<String>,
    #[serde(default)]
    pub(crate) ip_blocks: Vec<String>,
    #[serde(default)]
    pub(crate) not_ip_blocks: Vec<String>,
    #[serde(default)]
    pub(crate) remote_ip_blocks: Vec<String>,
    #[serde(default)]
    pub(crate) not_remote_ip_blocks: Vec<String>,
    #[serde(default)]
    pub(crate) service_accounts: Vec<String>,
    #[serde(default)]
    pub(crate) not_service_accounts: Vec<String>,
    #[serde(default)]
    pub(crate) trust_domains: Vec<String>,
    #[serde(default)]
    pub(crate) not_trust_domains: Vec<String>,
}

/// `Operation`; ports stay YAML values (numbers or strings) for the caller to check.
#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Operation {
    #[serde(default)]
    pub(crate) hosts: Vec<String>,
    #[serde(default)]
    pub(crate) not_hosts: Vec<String>,
    #[serde(default)]
    pub(crate) ports: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    pub(crate) not_ports: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    pub(crate) methods: Vec<String>,
    #[serde(default)]
    pub(crate) not_methods: Vec<String>,
    #[serde(default)]
    pub(crate) paths: Vec<String>,
    #[serde(default)]
    pub(crate) not_paths: Vec<String>,
}
