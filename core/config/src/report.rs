//! Errors, warnings and the unknown-field rule for one file being loaded.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::{ConfigError, ConfigWarning};

/// What a loader collects while reading one file: the file's name for every message, and the
/// warnings so far.
#[derive(Debug, Clone, Default)]
pub struct Report {
    file: String,
    warnings: Vec<ConfigWarning>,
}

impl Report {
    /// A report for `file` (the name the caller gave; may be empty).
    pub fn new(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            warnings: Vec::new(),
        }
    }

    /// The file name.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// An error at `object`, `field` of this file.
    pub fn error(&self, object: &str, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.file, object, field, message)
    }

    /// Records a warning at `object`, `field` of this file.
    pub fn warn(&mut self, object: &str, field: &str, message: impl Into<String>) {
        self.warnings
            .push(ConfigWarning::new(&self.file, object, field, message));
    }

    /// Records a warning as it is (it keeps its own file): for loaders that combine several
    /// files and find something wrong with the combination.
    pub fn push(&mut self, warning: ConfigWarning) {
        self.warnings.push(warning);
    }

    /// The warnings so far.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// The warnings, taking them.
    pub fn into_warnings(self) -> Vec<ConfigWarning> {
        self.warnings
    }

    /// Deserialises `value` (the part of `object` at field path `prefix`) into the wire type
    /// `T`. A type error names the failing field's full path. Then the one unknown-field rule:
    /// every field of the input that `T` does not have is a warning, naming the nearest field
    /// it does have when one is close (a likely misspelling), and the field is ignored.
    ///
    /// `T` must serialise every field it reads (no `skip_serializing_if`): what it writes back
    /// is the set of fields that were understood.
    pub fn decode<T: DeserializeOwned + Serialize>(
        &mut self,
        value: Value,
        object: &str,
        prefix: &str,
    ) -> Result<T, ConfigError> {
        let parsed: T = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let path = e.path().to_string();
            self.error(object, &join(prefix, &path), e.into_inner().to_string())
        })?;
        if let Ok(known) = serde_yaml_ng::to_value(&parsed) {
            let mut unknown = Vec::new();
            unknown_fields(&value, &known, prefix, &mut unknown);
            for (field, nearest) in unknown {
                let message = match nearest {
                    Some(n) => format!("unknown field; ignored (did you mean `{n}`?)"),
                    None => "unknown field; ignored".to_owned(),
                };
                self.warn(object, &field, message);
            }
        }
        Ok(parsed)
    }
}

/// `prefix.path`, where serde_path_to_error writes `.` for the value itself.
fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path) {
        (_, ".") => prefix.to_owned(),
        (true, p) => p.to_owned(),
        (false, p) if p.starts_with('[') => format!("{prefix}{p}"),
        (false, p) => format!("{prefix}.{p}"),
    }
}

/// The fields of `input` missing from `known` (the parse written back), with the nearest known
/// field at the same level.
fn unknown_fields(
    input: &Value,
    known: &Value,
    path: &str,
    out: &mut Vec<(String, Option<String>)>,
) {
    match (input, known) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in a {
                let name = yaml_text(k);
                let p = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                match b.get(k) {
                    Some(kv) => unknown_fields(v, kv, &p, out),
                    None => {
                        let names = b.keys().filter_map(Value::as_str);
                        out.push((p, nearest(&name, names)));
                    }
                }
            }
        }
        (Value::Sequence(a), Value::Sequence(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Tagged(a), Value::Tagged(b)) => unknown_fields(&a.value, &b.value, path, out),
        _ => {}
    }
}

/// The known name closest to `name` by edit distance (ignoring case), if it is close enough to
/// be a misspelling: at most a third of the name's length, and at least 1.
fn nearest<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> Option<String> {
    let limit = (name.chars().count() / 3).max(1);
    known
        .map(|k| {
            (
                edit_distance(&name.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                k,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_owned())
}

/// Edit distance over chars counting a swap of two neighbours as one edit (optimal string
/// alignment), since `nmae` for `name` is the commonest slip.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * w + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let sub = d[(i - 1) * w + j - 1] + usize::from(a[i - 1] != b[j - 1]);
                let mut best = sub.min(d[(i - 1) * w + j] + 1).min(d[i * w + j - 1] + 1);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * w + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * w + b.len()]
}

/// A scalar's text as written (`80`, `true`, `name`), or its YAML for anything else: how
/// messages quote a value.
pub fn yaml_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => serde_yaml_ng::to_string(v)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        destination_ports: Vec<u16>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    struct Inner {
        name: String,
    }

    #[test]
    fn misspelt_fields_warn_with_the_nearest_known_field() {
        let v: Value = serde_yaml_ng::from_str(
            "destinationPort: [1]\ndestinationPorts: [2]\ninner: {name: x, nmae: y}\nzzz: 1\n",
        )
        .expect("yaml");
        let mut r = Report::new("f.yaml");
        let w: Wire = r.decode(v, "Obj a/b", "spec").expect("decodes");
        assert_eq!(w.destination_ports, [2]);
        let got: Vec<(&str, &str)> = r
            .warnings()
            .iter()
            .map(|w| (w.field.as_str(), w.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "spec.destinationPort",
                    "unknown field; ignored (did you mean `destinationPorts`?)"
                ),
                (
                    "spec.inner.nmae",
                    "unknown field; ignored (did you mean `name`?)"
                ),
                ("spec.zzz", "unknown field; ignored"),
            ]
        );
    }

    #[test]
    fn type_errors_name_the_full_path() {
        let v: Value = serde_yaml_ng::from_str("destinationPorts: [1, x]\n").expect("yaml");
        let mut r = Report::new("f.yaml");
        let e = r.decode::<Wire>(v, "Obj a/b", "spec").expect_err("refused");
        assert_eq!(e.field, "spec.destinationPorts[1]");
        assert_eq!(e.file, "f.yaml");
        assert_eq!(e.object, "Obj a/b");
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("nmae", "name"), 1);
        assert_eq!(nearest("a", ["b"].into_iter()), Some("b".into()));
        assert_eq!(
            nearest("principal", ["principals", "paths"].into_iter()).as_deref(),
            Some("principals")
        );
        assert_eq!(nearest("hosts", ["methods", "paths"].into_iter()), None);
    }
}
