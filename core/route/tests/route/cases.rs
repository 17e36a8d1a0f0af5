//! The shared HTTPRoute case table (`testdata/route/cases.yaml`) through the route table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ambit_config::ConfigError as LoadError;
use ambit_route::{Forward, Outcome, RouteTable, RouteTarget as Target};
use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request};
use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    routes: String,
    #[serde(default)]
    target: TargetSpec,
    #[serde(default)]
    request: Option<RequestSpec>,
    #[serde(default)]
    rng: Vec<f64>,
    #[serde(default)]
    response: BTreeMap<String, String>,
    #[serde(default)]
    warnings: Vec<ExpectWarning>,
    expect: Option<Expect>,
    #[serde(default)]
    steps: Vec<Step>,
    error: Option<ExpectError>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    service: Option<String>,
    port: Option<u16>,
    waypoint: Option<String>,
    /// The client's namespace (for consumer routes); default: unknown.
    client: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    method: Option<String>,
    path: Option<String>,
    host: Option<String>,
    authority: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, OneOrMany>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    at_ms: u64,
    request: Option<RequestSpec>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    outcome: String,
    route: Option<String>,
    rule: Option<usize>,
    backend: Option<String>,
    status: Option<u16>,
    location: Option<String>,
    delay_ms: Option<u64>,
    path: Option<String>,
    #[serde(default, deserialize_with = "present")]
    host: Option<Option<String>>,
    authority: Option<String>,
    #[serde(default)]
    request_headers: BTreeMap<String, Option<String>>,
    #[serde(default)]
    response_headers: BTreeMap<String, Option<String>>,
    timeouts: Option<ExpectTimeouts>,
    #[serde(default, deserialize_with = "present")]
    retry: Option<Option<ExpectRetry>>,
    mirrors: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectTimeouts {
    request_ms: Option<u64>,
    backend_request_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectRetry {
    attempts: u32,
    codes: Vec<u16>,
    backoff_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectWarning {
    field: String,
    contains: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectError {
    object: String,
    field: String,
    contains: String,
}

/// Tells `key: null` (Some(None)) from an absent key (None).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

#[test]
fn shared_route_table() {
    let cases: Vec<Case> = ambit_test_util::cases::read("route/cases.yaml", 45);
    ambit_test_util::cases::check_all(&cases, |c| &c.name, run);
}

fn run(case: &Case) -> Result<(), String> {
    let loaded = RouteTable::parse(&case.routes, "case.yaml");
    if let Some(want) = &case.error {
        return match loaded {
            Ok(_) => Err("loaded, but an error was expected".into()),
            Err(e) => check_error(&e, want),
        };
    }
    let loaded = loaded.map_err(|e| format!("load failed: {e}"))?;
    check_warnings(&loaded.warnings, &case.warnings)?;

    let mut steps: Vec<(u64, Option<&RequestSpec>, &Expect)> = case
        .steps
        .iter()
        .map(|s| (s.at_ms, s.request.as_ref(), &s.expect))
        .collect();
    if let Some(expect) = &case.expect {
        steps.insert(0, (0, None, expect));
    }
    if steps.is_empty() {
        return Err("no expect and no steps".into());
    }
    let t0 = Instant::now();
    let fractions = if case.rng.is_empty() {
        vec![0.0]
    } else {
        case.rng.clone()
    };
    let mut draw = 0usize;
    let mut rng = move || {
        let f = fractions[draw % fractions.len()];
        draw += 1;
        (f * 18_446_744_073_709_551_616.0) as u64
    };
    for (i, (at_ms, request, expect)) in steps.into_iter().enumerate() {
        let req = request
            .or(case.request.as_ref())
            .cloned()
            .unwrap_or_default();
        let now = t0 + Duration::from_millis(at_ms);
        check_step(&loaded.table, case, &req, now, &mut rng, expect)
            .map_err(|e| format!("step {i}: {e}"))?;
    }
    Ok(())
}

fn check_error(e: &LoadError, want: &ExpectError) -> Result<(), String> {
    if e.object != want.object || e.field != want.field || !e.message.contains(&want.contains) {
        return Err(format!(
            "got error {e}\nwant object {:?}, field {:?}, message containing {:?}",
            want.object, want.field, want.contains
        ));
    }
    if e.file != "case.yaml" {
        return Err(format!("error does not name the file: {e}"));
    }
    Ok(())
}

fn check_warnings(
    got: &[ambit_config::ConfigWarning],
    want: &[ExpectWarning],
) -> Result<(), String> {
    let mut unmatched: Vec<_> = got.iter().collect();
    for w in want {
        let Some(i) = unmatched
            .iter()
            .position(|g| g.field == w.field && g.message.contains(&w.contains))
        else {
            return Err(format!(
                "missing warning at {:?} containing {:?}; got {got:#?}",
                w.field, w.contains
            ));
        };
        unmatched.remove(i);
    }
    if !unmatched.is_empty() {
        return Err(format!("unexpected warnings: {unmatched:#?}"));
    }
    Ok(())
}

fn check_step(
    table: &RouteTable,
    case: &Case,
    req: &RequestSpec,
    now: Instant,
    rng: &mut impl FnMut() -> u64,
    expect: &Expect,
) -> Result<(), String> {
    let service = case.target.service.as_deref().unwrap_or("shop/reviews");
    let (service_namespace, service_name) = service.split_once('/').ok_or("target.service")?;
    let waypoint = case
        .target
        .waypoint
        .as_deref()
        .unwrap_or("shop/waypoint")
        .split_once('/');
    let target = Target {
        service_namespace,
        service_name,
        port: case.target.port.unwrap_or(9080),
        waypoint,
        authority: req.authority.as_deref(),
        client_namespace: case.target.client.as_deref(),
    };
    let method: Method = req
        .method
        .as_deref()
        .unwrap_or("GET")
        .parse()
        .map_err(|e| format!("method: {e}"))?;
    let path = req.path.as_deref().unwrap_or("/");
    let mut headers = HeaderMap::new();
    if let Some(host) = &req.host {
        headers.insert(HOST, value(host)?);
    }
    for (name, values) in &req.headers {
        let name: HeaderName = name.parse().map_err(|e| format!("header name: {e}"))?;
        let values = match values {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        };
        for v in values {
            headers.append(name.clone(), value(&v)?);
        }
    }

    let outcome = table.route(&target, &method, path, &headers, now, rng);
    let kind = match &outcome {
        Outcome::Unrouted => "unrouted",
        Outcome::NotFound => "not_found",
        Outcome::Forward(_) => "forward",
        Outcome::Redirect { .. } => "redirect",
        Outcome::Abort { .. } => "abort",
        Outcome::RateLimited => "rate_limited",
        Outcome::NoBackend => "no_backend",
        Outcome::BackendNotPermitted { .. } => "not_permitted",
        Outcome::Preflight { .. } => "preflight",
        _ => "unknown",
    };
    if kind != expect.outcome {
        return Err(format!("got {outcome:?}, want {}", expect.outcome));
    }
    if let Some(status) = expect.status {
        let got = outcome.status().map(|s| s.as_u16());
        if got != Some(status) {
            return Err(format!("status {got:?}, want {status}"));
        }
    }
    match &outcome {
        Outcome::Redirect { location, .. } => {
            if let Some(want) = &expect.location
                && location != want
            {
                return Err(format!("Location {location:?}, want {want:?}"));
            }
        }
        Outcome::Abort { delay, .. } => {
            let got = delay.map(|d| d.as_millis() as u64);
            if got != expect.delay_ms {
                return Err(format!(
                    "abort delay {got:?} ms, want {:?}",
                    expect.delay_ms
                ));
            }
        }
        Outcome::Forward(f) => check_forward(f, case, req, &method, path, &headers, expect)?,
        Outcome::Preflight { headers } => {
            compare_headers("preflight", headers, &expect.response_headers)?;
        }
        Outcome::BackendNotPermitted { route, backend: b } => {
            for (what, got, want) in [
                ("route", route.clone(), &expect.route),
                ("backend", backend(b), &expect.backend),
            ] {
                if let Some(w) = want
                    && *w != got
                {
                    return Err(format!("{what} {got:?}, want {w:?}"));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_forward(
    f: &Forward,
    case: &Case,
    req: &RequestSpec,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    expect: &Expect,
) -> Result<(), String> {
    let eq = |what: &str, got: String, want: &Option<String>| match want {
        Some(w) if *w != got => Err(format!("{what} {got:?}, want {w:?}")),
        _ => Ok(()),
    };
    eq("route", f.route().to_owned(), &expect.route)?;
    if let Some(rule) = expect.rule
        && rule != f.rule
    {
        return Err(format!("rule {}, want {rule}", f.rule));
    }
    eq("backend", backend(f.backend()), &expect.backend)?;
    let delay = f.delay.map(|d| d.as_millis() as u64);
    if delay != expect.delay_ms {
        return Err(format!("delay {delay:?} ms, want {:?}", expect.delay_ms));
    }
    if let Some(t) = &expect.timeouts {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        let got = (ms(f.timeouts.request), ms(f.timeouts.backend_request));
        if got != (t.request_ms, t.backend_request_ms) {
            return Err(format!("timeouts {:?}", f.timeouts));
        }
    }
    if let Some(want) = &expect.retry {
        let got = f.retry().map(|r| {
            (
                r.attempts,
                r.codes.iter().map(|c| c.as_u16()).collect::<Vec<_>>(),
                r.backoff.map(|d| d.as_millis() as u64),
            )
        });
        let want = want
            .as_ref()
            .map(|r| (r.attempts, r.codes.clone(), r.backoff_ms));
        if got != want {
            return Err(format!("retry {:?}, want {want:?}", f.retry()));
        }
    }
    if let Some(want) = &expect.mirrors {
        let got: Vec<String> = f.mirrors().map(backend).collect();
        if got != *want {
            return Err(format!("mirrors {got:?}, want {want:?}"));
        }
    }

    // The request as the waypoint would forward it.
    let uri = match &req.authority {
        Some(a) => format!("http://{a}{path}"),
        None => path.to_owned(),
    };
    let mut builder = Request::builder().method(method.clone()).uri(uri);
    for (name, v) in headers {
        builder = builder.header(name, v);
    }
    let (mut parts, ()) = builder
        .body(())
        .map_err(|e| format!("request: {e}"))?
        .into_parts();
    f.apply_request(&mut parts);
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    eq("path", pq, &expect.path)?;
    if let Some(want) = &expect.host {
        let got = parts.headers.get(HOST).map(text);
        if got != *want {
            return Err(format!("Host {got:?}, want {want:?}"));
        }
    }
    let authority = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    eq("authority", authority, &expect.authority)?;
    compare_headers("request", &parts.headers, &expect.request_headers)?;

    let mut response = HeaderMap::new();
    for (k, v) in &case.response {
        let name: HeaderName = k.parse().map_err(|e| format!("response header: {e}"))?;
        response.insert(name, value(v)?);
    }
    f.apply_response(&mut response);
    compare_headers("response", &response, &expect.response_headers)
}

fn compare_headers(
    what: &str,
    got: &HeaderMap,
    want: &BTreeMap<String, Option<String>>,
) -> Result<(), String> {
    for (name, want) in want {
        let values: Vec<String> = got.get_all(name.as_str()).iter().map(text).collect();
        let got = (!values.is_empty()).then(|| values.join(","));
        if got != *want {
            return Err(format!("{what} header {name}: {got:?}, want {want:?}"));
        }
    }
    Ok(())
}

fn backend(b: &ambit_route::Backend) -> String {
    match b.port {
        Some(p) => format!("{}/{}:{p}", b.namespace, b.name),
        None => format!("{}/{}", b.namespace, b.name),
    }
}

fn value(s: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(s).map_err(|e| format!("header value {s:?}: {e}"))
}

fn text(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}
