//! Reading the Prometheus text exposition format (0.0.4) back into samples: what a proxy's
//! `/metrics` serves, so the service graph can be drawn straight from the proxies.

use std::collections::BTreeMap;

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name (`istio_requests_total`, `..._bucket`, ...).
    pub name: String,
    /// Label names to values.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, or `""`.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// Why a line of exposition text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ExpositionError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Every sample in `text`; comments and blank lines are skipped, a malformed line is an error
/// naming it (a scrape that half-parses would draw a graph that lies).
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, ExpositionError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: &str| ExpositionError {
            line: i + 1,
            message: message.to_owned(),
        };
        let (name, rest) = match line.find(['{', ' ']) {
            Some(at) => line.split_at(at),
            None => return Err(err("a sample needs a value")),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(err("bad metric name"));
        }
        let (labels, rest) = if let Some(body) = rest.strip_prefix('{') {
            read_labels(body).map_err(|m| err(&m))?
        } else {
            (BTreeMap::new(), rest)
        };
        let mut parts = rest.split_whitespace();
        let value = parts.next().ok_or_else(|| err("no value"))?;
        let value = parse_value(value).ok_or_else(|| err("bad value"))?;
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// `name="value",...}` → the labels and what follows the closing brace.
fn read_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (name, rest) = s.split_once("=\"").ok_or("bad label")?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((at, '"')) => break at,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.insert(name.to_owned(), value);
        s = &rest[end + 1..];
    }
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        v => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_escapes_and_special_values() {
        let text = "# HELP x y\n# TYPE x counter\nx{a=\"1\",b=\"q\\\"z\\\\\"} 3\n\nup 1 1700000000\nh_bucket{le=\"+Inf\"} +Inf\n";
        let s = parse_exposition(text).expect("parses");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "x");
        assert_eq!(s[0].label("b"), "q\"z\\");
        assert_eq!(s[0].value, 3.0);
        assert_eq!((s[1].name.as_str(), s[1].value), ("up", 1.0));
        assert_eq!(s[2].label("le"), "+Inf");
        assert!(s[2].value.is_infinite());
    }

    #[test]
    fn malformed_lines_are_errors_that_name_them() {
        for (text, line) in [
            ("ok 1\nbad{a=\"1\" 2\n", 2),
            ("x{a=1} 2", 1),
            ("x 1\ny", 2),
            ("x{a=\"1\"} nope", 1),
            ("bad-name 1", 1),
        ] {
            let e = parse_exposition(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn reads_what_metrics_render() {
        let m = crate::Metrics::new();
        let c = m.tcp(&crate::TcpLabels::default());
        c.opened();
        let text = m.render();
        let s = parse_exposition(&text).expect("our own output parses");
        assert!(
            s.iter()
                .any(|s| s.name == "istio_tcp_connections_opened_total" && s.value == 1.0)
        );
    }
}
