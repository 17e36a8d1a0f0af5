//! Gateway API `HTTPRoute` for ambit (work in progress).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
