//! The floor under every ambit config loader.
//!
//! Every loader in ambit (HTTPRoute, AuthorizationPolicy, PeerAuthentication,
//! RequestAuthentication, ztunnel's local config) stands on the same few pieces, so that the
//! same mistake gets the same answer whichever loader, language or ABI meets it:
//!
//! - [`check`]: the guard that refuses hostile nesting before a YAML parser sees the text.
//! - [`objects`]: ONE reader of Kubernetes-style multi-document YAML (`---` separated,
//!   `kind: List` expanded), numbering documents once for every loader.
//! - [`ConfigError`] `{file, object, field, message}` and [`ConfigWarning`] of the same shape:
//!   every loader returns them, never a stringified sub-error.
//! - [`Report::decode`]: ONE unknown-field rule. A field the wire type does not know is a
//!   warning naming the nearest known field; loaders describe every field that Istio, ztunnel
//!   or Gateway API define, so a real field is never refused as unknown (at most it warns that
//!   it is not supported).
//! - [`duration`]: the Gateway API (GEP-2257) and Istio (protobuf JSON) grammars;
//!   [`time::rfc3339`] for timestamps.
//! - [`attach`]: which waypoint-side objects apply to a request, by `targetRefs`.
//!
//! ```
//! use ambit_config::{Report, objects};
//!
//! #[derive(serde::Deserialize, serde::Serialize)]
//! struct Spec { port: u16 }
//!
//! let yaml = "kind: Thing\nmetadata: {name: a, namespace: shop}\nspec: {port: 80, prot: 1}\n";
//! let mut report = Report::new("things.yaml");
//! for obj in objects(yaml, &report)? {
//!     let spec: Spec = report.decode(obj.spec.clone(), &obj.label(), "spec")?;
//!     assert_eq!(spec.port, 80);
//! }
//! let w = &report.warnings()[0];
//! assert_eq!((w.object.as_str(), w.field.as_str()), ("Thing shop/a", "spec.prot"));
//! assert!(w.message.contains("did you mean `port`"), "{w}");
//!
//! let bad = objects("kind: Thing\nmetadata: {name: [x]}\n", &report).unwrap_err();
//! assert_eq!((bad.file.as_str(), bad.field.as_str()), ("things.yaml", "metadata.name"));
//! # Ok::<(), ambit_config::ConfigError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attach;
pub mod duration;
mod error;
mod guard;
mod objects;
mod report;
pub mod time;

pub use error::{ConfigError, ConfigWarning};
pub use guard::{MAX_DEPTH, MAX_INDENT, TooDeep, check};
pub use objects::{Object, objects, objects_of};
pub use report::{Report, yaml_text};
