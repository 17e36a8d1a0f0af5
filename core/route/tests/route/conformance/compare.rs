//! The suite's response checks: `http.CompareRoundTrip` (gateway role) and the mesh echo
//! client's `compareRequest`, over what the route table decided.

use ambit_test_util::conformance::{Case, ExpectedRequest, Redirect};
use http::HeaderMap;
use http::header::{HOST, HeaderName, HeaderValue, LOCATION};

use super::Sent;

/// `http.CompareRoundTrip` for a 200 or 204 the waypoint answered itself (a CORS preflight):
/// the suite then sees no echoed request, only its own method, so it must expect no path,
/// host, namespace, request headers or backend; the response headers are checked.
pub(super) fn check_local_answer(case: &Case, s: &Sent, headers: &HeaderMap) -> Result<(), String> {
    let (path, method, host, sent_headers) = match &case.expected_request {
        None => (
            case.request.path.clone(),
            case.request.method.clone(),
            case.request.host.clone(),
            !case.request.headers.is_empty(),
        ),
        Some(w) => (
            w.path.clone(),
            w.method.clone(),
            w.host.clone(),
            w.headers.is_some(),
        ),
    };
    let expects_echo = path.is_some_and(|p| !p.is_empty())
        || host.is_some_and(|h| !h.is_empty())
        || !case.namespace.is_empty()
        || !case.backend.is_empty()
        || sent_headers;
    if expects_echo {
        return Err("answered by the waypoint, but the case expects a backend to echo".into());
    }
    let method = method
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "GET".into());
    if s.parts.method.as_str() != method {
        return Err(format!("method {}, want {method}", s.parts.method));
    }
    check_response_headers(case, headers)
}

/// A local answer's headers as the mesh client sees them: `Location` for a redirect.
pub(super) fn answered_headers(location: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        h.insert(LOCATION, v);
    }
    h
}

/// `http.CompareRoundTrip` for a 200: the request the backend saw (path with query, method,
/// host when expected, headers present and absent), its namespace, the response headers.
pub(super) fn check_gateway(
    case: &Case,
    s: &Sent,
    namespace: &str,
    request: &http::request::Parts,
    response: &HeaderMap,
) -> Result<(), String> {
    let default = ExpectedRequest::default();
    let want = case.expected_request.as_ref().unwrap_or(&default);
    let from_request = case.expected_request.is_none();
    let want_path = if from_request {
        case.request.path.clone()
    } else {
        want.path.clone()
    }
    .unwrap_or_default();
    let got_path = request.uri.path_and_query().map_or("/", |p| p.as_str());
    let want_path = if want_path.is_empty() {
        "/".to_owned()
    } else {
        want_path
    };
    if case.grpc.is_none() && got_path != want_path {
        return Err(format!("backend saw path {got_path:?}, want {want_path:?}"));
    }
    let want_method = if from_request {
        case.request.method.clone()
    } else {
        want.method.clone()
    }
    .filter(|m| !m.is_empty())
    .unwrap_or_else(|| "GET".to_owned());
    if s.parts.method.as_str() != want_method && case.grpc.is_none() {
        return Err(format!("method {}, want {want_method}", s.parts.method));
    }
    let want_host = if from_request {
        case.request.host.clone()
    } else {
        want.host.clone()
    };
    if let Some(h) = want_host.filter(|h| !h.is_empty()) {
        let got = request
            .headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if got != h {
            return Err(format!("backend saw host {got:?}, want {h:?}"));
        }
    }
    if case.namespace != namespace {
        return Err(format!(
            "backend namespace {namespace}, want {:?}",
            case.namespace
        ));
    }
    let want_headers = if from_request {
        Some(&case.request.headers)
    } else {
        want.headers.as_ref()
    };
    check_headers(
        "request",
        &request.headers,
        want_headers.into_iter().flatten(),
        &want.absent_headers,
    )?;
    check_response_headers(case, response)
}

/// The mesh echo client's `compareRequest`: request headers present and absent, response
/// headers present and absent (the backend's pod name is checked by the caller).
pub(super) fn check_mesh(
    case: &Case,
    request: &http::request::Parts,
    response: &HeaderMap,
) -> Result<(), String> {
    if let Some(want) = &case.expected_request {
        check_headers(
            "request",
            &request.headers,
            want.headers.iter().flatten(),
            &want.absent_headers,
        )?;
    }
    check_response_headers(case, response)
}

pub(super) fn check_response_headers(case: &Case, response: &HeaderMap) -> Result<(), String> {
    check_headers(
        "response",
        response,
        &case.response.headers,
        &case.response.absent_headers,
    )?;
    for (name, valid) in &case.response.valid_header_values {
        let got =
            joined(response, name).ok_or_else(|| format!("response header {name} missing"))?;
        if !valid.contains(&got) {
            return Err(format!(
                "response header {name} {got:?}, want one of {valid:?}"
            ));
        }
    }
    Ok(())
}

pub(super) fn check_headers<'a>(
    what: &str,
    got: &HeaderMap,
    want: impl IntoIterator<Item = (&'a String, &'a String)>,
    absent: &[String],
) -> Result<(), String> {
    for (name, value) in want {
        match joined(got, name) {
            Some(v) if v == *value => {}
            Some(v) => return Err(format!("{what} header {name} {v:?}, want {value:?}")),
            None => return Err(format!("{what} header {name} missing, want {value:?}")),
        }
    }
    for name in absent {
        if let Some(v) = joined(got, name) {
            return Err(format!("{what} header {name} is {v:?}, want it absent"));
        }
    }
    Ok(())
}

/// The values of `name`, joined with "," as the suite compares them.
pub(super) fn joined(h: &HeaderMap, name: &str) -> Option<String> {
    let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?;
    let values: Vec<&str> = h
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The suite's redirect check: host when expected, the port (or the scheme's default), the
/// scheme (default the request's, `http`) and the path (default the request's, without query).
pub(super) fn check_redirect(want: &Redirect, location: &str, s: &Sent) -> Result<(), String> {
    let uri: http::Uri = location
        .parse()
        .map_err(|e| format!("Location {location:?}: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().map(|p| p.to_string()).unwrap_or_default();
    if let Some(h) = want.host.as_deref().filter(|h| !h.is_empty())
        && h != host
    {
        return Err(format!(
            "redirect host {host:?}, want {h:?} (Location {location})"
        ));
    }
    match want.port.as_deref().filter(|p| !p.is_empty()) {
        Some(p) if p != port => {
            return Err(format!(
                "redirect port {port:?}, want {p:?} (Location {location})"
            ));
        }
        Some(_) => {}
        None => {
            let default = match scheme {
                "https" => "443",
                _ => "80",
            };
            if !port.is_empty() && port != default {
                return Err(format!(
                    "redirect port {port:?} for {scheme}, want none or {default} (Location {location})"
                ));
            }
        }
    }
    let want_scheme = want
        .scheme
        .as_deref()
        .filter(|x| !x.is_empty())
        .unwrap_or("http");
    if scheme != want_scheme {
        return Err(format!(
            "redirect scheme {scheme:?}, want {want_scheme:?} (Location {location})"
        ));
    }
    let want_path = want
        .path
        .as_deref()
        .filter(|x| !x.is_empty())
        .unwrap_or_else(|| s.parts.uri.path());
    if uri.path() != want_path {
        return Err(format!(
            "redirect path {:?}, want {want_path:?} (Location {location})",
            uri.path()
        ));
    }
    Ok(())
}
