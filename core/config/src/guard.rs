//! The guard for untrusted YAML, run before the parser.
//!
//! YAML parsers spend time super-linear in nesting depth (a 200 KB file of `[` took two minutes
//! to refuse in a debug build) and the deserialisers stop at 128 levels anyway. [`check`]
//! estimates the nesting of a text in one pass, without parsing it, and refuses anything deeper
//! than [`MAX_DEPTH`] with a message that names the line, so every loader in ambit can call it
//! first. The estimate counts unquoted `[`/`{` (flow collections), a run of `- ` / `? `
//! indicators at the start of a line (block collections opened on one line), and indentation;
//! it never refuses YAML that a loader would accept, except for values nested more than
//! [`MAX_DEPTH`] deep, which no ambit config has.
//!
//! ```
//! assert!(ambit_config::check("a: [1, {b: [2]}]\n- - x\n").is_ok());
//! let deep = "[".repeat(1000);
//! assert_eq!(ambit_config::check(&deep).map_err(|e| e.line), Err(1));
//! ```

/// The deepest nesting accepted (serde's YAML deserialiser refuses deeper values itself).
pub const MAX_DEPTH: usize = 128;

/// Indentation (in columns) beyond which a line is refused: no config is indented this far.
pub const MAX_INDENT: usize = 1024;

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what} (the limit is {limit}); refusing to parse this YAML")]
#[non_exhaustive]
pub struct TooDeep {
    /// The 1-based line where the limit was crossed.
    pub line: usize,
    /// What crossed it.
    pub what: &'static str,
    /// The limit.
    pub limit: usize,
}

/// Checks that `text` nests no deeper than [`MAX_DEPTH`] and indents no further than
/// [`MAX_INDENT`].
pub fn check(text: &str) -> Result<(), TooDeep> {
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
        if indent > MAX_INDENT {
            return Err(TooDeep {
                line: line_no,
                what: "indentation too deep",
                limit: MAX_INDENT,
            });
        }
        let body = &line[indent..];
        let mut block = 0usize;
        let mut rest = body;
        while let Some(r) = rest
            .strip_prefix("- ")
            .or_else(|| rest.strip_prefix("? "))
            .or_else(|| rest.strip_prefix("-\t"))
        {
            block += 1;
            rest = r.trim_start_matches([' ', '\t']);
        }
        if block > MAX_DEPTH {
            return Err(TooDeep {
                line: line_no,
                what: "block collections nested too deep on one line",
                limit: MAX_DEPTH,
            });
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in body.chars() {
            match (quote, c) {
                (Some('"'), '"') if prev != '\\' => quote = None,
                (Some('\''), '\'') => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') if matches!(prev, ' ' | '\t' | '[' | '{' | ',' | ':') => {
                    quote = Some(c)
                }
                (None, '#') if matches!(prev, ' ' | '\t') => break,
                (None, '[' | '{') => {
                    flow += 1;
                    if flow > MAX_DEPTH {
                        return Err(TooDeep {
                            line: line_no,
                            what: "flow collections nested too deep",
                            limit: MAX_DEPTH,
                        });
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
        // A quoted scalar may span lines; keep the quote state only within the line, which
        // can only under-count nesting inside multi-line strings.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_configs() {
        let ok = [
            "workloads:\n- {uid: a, labels: {app: x}}\n  services: {\"a/b\": {80: 8080}}\n",
            "rules:\n- - - principals: [{Exact: \"a[b\"}]\n",
            "key: '[[[[[[' # [[[[\n",
            "text: \"{{{{\\\"[[[\"\n",
            &format!("a: {}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH)),
        ];
        for t in ok {
            assert!(check(t).is_ok(), "{t:?}: {:?}", check(t));
        }
    }

    #[test]
    fn refuses_deep_flow_block_and_indent() {
        let flow = format!("a: {}", "[".repeat(MAX_DEPTH + 1));
        assert_eq!(check(&flow).map_err(|e| e.line), Err(1));
        let block = format!("x: 1\n{}x\n", "- ".repeat(MAX_DEPTH + 1));
        assert_eq!(
            check(&block).map_err(|e| (e.line, e.what)),
            Err((2, "block collections nested too deep on one line"))
        );
        let spread = format!("a:\n{}", "{\n".repeat(MAX_DEPTH + 1));
        assert!(check(&spread).is_err(), "flow depth carries across lines");
        let indent = format!("a:\n{}b: 1\n", " ".repeat(MAX_INDENT + 1));
        assert_eq!(
            check(&indent).map_err(|e| e.what),
            Err("indentation too deep")
        );
    }
}
