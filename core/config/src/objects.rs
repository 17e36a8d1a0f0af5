//! The one reader of Kubernetes-style multi-document YAML.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::{ConfigError, Report};

/// One Kubernetes-style object of a YAML stream: its envelope read, its `spec` left for the
/// loader of its kind.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Object {
    /// `apiVersion` (empty when absent).
    pub api_version: String,
    /// `kind` (empty when absent).
    pub kind: String,
    /// `metadata.name`.
    pub name: Option<String>,
    /// `metadata.namespace`, `default` when absent (as `kubectl apply` does).
    pub namespace: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, Value>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.creationTimestamp`, as written.
    pub creation_timestamp: Option<String>,
    /// `spec` (null when absent).
    pub spec: Value,
    /// Where it sits in the stream: `document 3`, or `document 3 item 2` inside a `List`.
    pub document: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: Value,
    #[serde(default)]
    items: Vec<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, Value>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    creation_timestamp: Option<String>,
}

/// Every object of a YAML stream (documents separated by `---`; empty documents skipped; the
/// `items` of a `List` such as `kubectl get -o yaml` writes, each in turn). The text is first
/// run through [`check`](crate::check). A document that is not YAML, or whose envelope
/// (`apiVersion`, `kind`, `metadata`) has the wrong shape, stops the read with an error naming
/// it (`document N`) and the field.
pub fn objects(text: &str, report: &Report) -> Result<Vec<Object>, ConfigError> {
    crate::check(text).map_err(|e| report.error("document", "", e.to_string()))?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let at = format!("document {}", i + 1);
        let value = Value::deserialize(doc)
            .map_err(|e| report.error(&at, "", format!("not valid YAML: {e}")))?;
        push(value, at, report, &mut out)?;
    }
    Ok(out)
}

/// The objects of a list already parsed from YAML (a config that embeds Kubernetes objects,
/// such as the local config's `istioPolicies`); each is placed as `at[i]`.
pub fn objects_of(
    values: Vec<Value>,
    at: &str,
    report: &Report,
) -> Result<Vec<Object>, ConfigError> {
    let mut out = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        push(v, format!("{at}[{i}]"), report, &mut out)?;
    }
    Ok(out)
}

fn push(
    value: Value,
    at: String,
    report: &Report,
    out: &mut Vec<Object>,
) -> Result<(), ConfigError> {
    if value.is_null() {
        return Ok(());
    }
    let env: Envelope = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        report.error(&at, &field, e.into_inner().to_string())
    })?;
    let kind = env.kind.unwrap_or_default();
    if kind.ends_with("List") {
        for (j, item) in env.items.into_iter().enumerate() {
            push(item, format!("{at} item {}", j + 1), report, out)?;
        }
        return Ok(());
    }
    out.push(Object {
        api_version: env.api_version.unwrap_or_default(),
        kind,
        name: env.metadata.name,
        namespace: env.metadata.namespace.unwrap_or_else(|| "default".into()),
        annotations: env.metadata.annotations,
        labels: env.metadata.labels,
        creation_timestamp: env.metadata.creation_timestamp,
        spec: env.spec,
        document: at,
    });
    Ok(())
}

impl Object {
    /// How messages name it: `Kind namespace/name`, or `Kind in document N` without a name.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{} {}/{n}", self.kind, self.namespace),
            None => format!("{} in {}", self.kind, self.document),
        }
    }

    /// `namespace/name`, the key Istio and Gateway API objects are known by.
    pub fn key(&self) -> Option<String> {
        self.name
            .as_ref()
            .map(|n| format!("{}/{n}", self.namespace))
    }

    /// The API group: `apiVersion` before the `/` (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version.split_once('/').map_or("", |(g, _)| g)
    }

    /// Its name, or the error every loader gives for an object without one.
    pub fn require_name(&self, report: &Report) -> Result<&str, ConfigError> {
        self.name
            .as_deref()
            .ok_or_else(|| report.error(&self.label(), "metadata.name", "missing"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_numbered_once_lists_expand_and_nulls_skip() {
        let yaml = "kind: A\nmetadata: {name: a}\n---\n---\nkind: BList\nitems:\n- {kind: B, metadata: {name: b1, namespace: x}}\n- {kind: B}\n";
        let r = Report::new("f");
        let objs = objects(yaml, &r).expect("reads");
        let labels: Vec<(String, String)> = objs
            .iter()
            .map(|o| (o.label(), o.document.clone()))
            .collect();
        assert_eq!(
            labels,
            [
                ("A default/a".to_owned(), "document 1".to_owned()),
                ("B x/b1".to_owned(), "document 3 item 1".to_owned()),
                (
                    "B in document 3 item 2".to_owned(),
                    "document 3 item 2".to_owned()
                ),
            ]
        );
        let e = objects("a: [", &r).expect_err("not yaml");
        assert_eq!((e.file.as_str(), e.object.as_str()), ("f", "document 1"));
        let e = objects("kind: A\n---\nkind: [x]\n", &r).expect_err("bad kind");
        assert_eq!(
            (e.object.as_str(), e.field.as_str()),
            ("document 2", "kind")
        );
    }
}
