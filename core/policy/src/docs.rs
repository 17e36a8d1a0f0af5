//! Reading a multi-document YAML stream of Kubernetes-style objects, for the waypoint loaders.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::istio::{LoadError, from_value};

/// One object of the stream, with what every loader needs to name it in messages.
pub(crate) struct Doc {
    pub(crate) kind: String,
    pub(crate) api_version: String,
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) annotations: BTreeMap<String, serde_yaml_ng::Value>,
    pub(crate) spec: serde_yaml_ng::Value,
    /// `file: Kind namespace/name` (without `file: ` when no file name was given).
    pub(crate) label: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: serde_yaml_ng::Value,
}

#[derive(Deserialize, Default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, serde_yaml_ng::Value>,
}

/// Every non-empty document of `yaml`. Stops at the first malformed one.
pub(crate) fn documents(yaml: &str, file: &str) -> Result<Vec<Doc>, LoadError> {
    let prefix = |s: String| {
        if file.is_empty() {
            s
        } else {
            format!("{file}: {s}")
        }
    };
    ambit_yaml::check(yaml).map_err(|e| LoadError {
        object: prefix("document".into()),
        field: String::new(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let at = prefix(format!("document {}", i + 1));
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| LoadError {
            object: at.clone(),
            field: String::new(),
            message: format!("not valid YAML: {e}"),
        })?;
        if value.is_null() {
            continue;
        }
        let obj: Object = from_value(value, &at, "")?;
        let kind = obj.kind.unwrap_or_default();
        let namespace = obj.metadata.namespace.unwrap_or_else(|| "default".into());
        let name = obj.metadata.name.ok_or_else(|| LoadError {
            object: prefix(format!("{kind} in document {}", i + 1)),
            field: "metadata.name".into(),
            message: "missing".into(),
        })?;
        out.push(Doc {
            label: prefix(format!("{kind} {namespace}/{name}")),
            api_version: obj.api_version.unwrap_or_default(),
            kind,
            name,
            namespace,
            annotations: obj.metadata.annotations,
            spec: obj.spec,
        });
    }
    Ok(out)
}

/// Istio's security API group, both served versions.
pub(crate) fn is_security_api(api_version: &str) -> bool {
    matches!(
        api_version,
        "security.istio.io/v1" | "security.istio.io/v1beta1"
    )
}

/// The error for a security kind under another API version.
pub(crate) fn unsupported_api(doc: &Doc) -> LoadError {
    LoadError {
        object: doc.label.clone(),
        field: "apiVersion".into(),
        message: format!(
            "{:?} is not supported; use security.istio.io/v1 or v1beta1",
            doc.api_version
        ),
    }
}
