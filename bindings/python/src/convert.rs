//! Conversions between Python values and the Rust types the facade takes.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use facade::hbone::http::{HeaderMap, HeaderName, HeaderValue, Method};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::value_err;

/// `ip:port` text.
pub(crate) fn socket_addr(s: &str, what: &str) -> PyResult<SocketAddr> {
    s.parse()
        .map_err(|_| value_err(format!("{what} {s:?} must be ip:port")))
}

/// `ip:port` text, or None.
pub(crate) fn opt_socket_addr(s: Option<&str>, what: &str) -> PyResult<Option<SocketAddr>> {
    s.map(|s| socket_addr(s, what)).transpose()
}

/// An IP address.
pub(crate) fn ip(s: &str) -> PyResult<IpAddr> {
    s.parse()
        .map_err(|_| value_err(format!("{s:?} is not an IP address")))
}

/// An HTTP method.
pub(crate) fn method(s: &str) -> PyResult<Method> {
    Method::from_bytes(s.as_bytes()).map_err(|_| value_err(format!("{s:?} is not an HTTP method")))
}

/// Headers from a dict (or any mapping with `items()`) of `str` to `str`, or an iterable of
/// `(name, value)` pairs (names may repeat). None is no headers.
pub(crate) fn header_map(obj: Option<&Bound<'_, PyAny>>) -> PyResult<HeaderMap> {
    let mut out = HeaderMap::new();
    let Some(obj) = obj else {
        return Ok(out);
    };
    let pairs = if obj.cast::<PyDict>().is_ok() || obj.hasattr("items")? {
        obj.call_method0("items")?
    } else {
        obj.clone()
    };
    for item in pairs.try_iter()? {
        let (name, value): (String, String) = item?.extract()?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| value_err(format!("{name:?} is not a valid header name")))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| value_err(format!("{value:?} is not a valid value for {name}")))?;
        out.append(name, value);
    }
    Ok(out)
}

/// Headers as `(name, value)` pairs in order (values that are not UTF-8 are decoded lossily).
pub(crate) fn header_list(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Seconds as a `Duration`; negative, NaN or huge values are a `ValueError`.
pub(crate) fn duration(secs: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| value_err(format!("{what} must be a non-negative number of seconds")))
}

/// Seconds since the Unix epoch: `now` if given, else the system clock.
pub(crate) fn unix_now(now: Option<f64>) -> PyResult<u64> {
    match now {
        Some(t) => Ok(duration(t, "now")?.as_secs()),
        None => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)),
    }
}

/// A `(namespace, name)` pair as borrowed strings.
pub(crate) fn pair(p: &(String, String)) -> (&str, &str) {
    (p.0.as_str(), p.1.as_str())
}
