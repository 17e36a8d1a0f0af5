//! The one error and warning shape of every config loader.

use std::fmt;

/// Config that could not be loaded: which file, which object in it, which field of that
/// object, and what is wrong. Every ambit loader returns this shape, so a caller (Rust, C or
/// Python) can point at the exact place whichever loader refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct ConfigError {
    /// The file name the caller gave (empty when none was given).
    pub file: String,
    /// The object: `Kind namespace/name`, `workloads[2] (shop/web)`, or `document N` when the
    /// object has no readable name.
    pub object: String,
    /// The field path inside the object (`spec.rules[0].to[0].operation.methods`), or empty
    /// for the object as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Something a loader accepted with a caveat, or skipped: never silent. Same places as
/// [`ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigWarning {
    /// The file name the caller gave (empty when none was given).
    pub file: String,
    /// The object, as in [`ConfigError::object`].
    pub object: String,
    /// The field path, as in [`ConfigError::field`].
    pub field: String,
    /// What happens instead.
    pub message: String,
}

impl ConfigError {
    /// An error at `file`, `object`, `field`.
    pub fn new(file: &str, object: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            object: object.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl ConfigWarning {
    /// A warning at `file`, `object`, `field`.
    pub fn new(file: &str, object: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            object: object.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// `file: object: field: message`, without `file: ` when no file name was given. The other
/// parts are always written (an empty field shows as `: :`), so the shape is the same for every
/// message and easy to take apart.
fn place(f: &mut fmt::Formatter<'_>, [file, object, field, message]: [&str; 4]) -> fmt::Result {
    if !file.is_empty() {
        write!(f, "{file}: ")?;
    }
    write!(f, "{object}: {field}: {message}")
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        place(f, [&self.file, &self.object, &self.field, &self.message])
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        place(f, [&self.file, &self.object, &self.field, &self.message])
    }
}
