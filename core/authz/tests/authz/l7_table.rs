//! The shared L7 case table (`testdata/authz/l7-cases.yaml`) through the waypoint engine.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ambit_authz::{HttpRequest, L7Policies, RequestAuth, WaypointTarget};
use ambit_identity::SpiffeId;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    policies: String,
    #[serde(default)]
    target: Target,
    request: Request,
    expect: Expect,
    warnings: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    namespace: Option<String>,
    waypoint: Option<String>,
    /// `ns/name`; explicitly `null` for workload-addressed traffic.
    #[serde(default = "default_service", deserialize_with = "nullable")]
    service: Option<String>,
}

impl Default for Target {
    fn default() -> Self {
        Self {
            namespace: None,
            waypoint: None,
            service: default_service(),
        }
    }
}

fn default_service() -> Option<String> {
    Some("shop/cart".into())
}

fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Request {
    source: Option<String>,
    #[serde(default)]
    plaintext: bool,
    source_ip: Option<IpAddr>,
    remote_ip: Option<IpAddr>,
    destination_ip: Option<IpAddr>,
    port: Option<u16>,
    host: Option<String>,
    method: Option<String>,
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, OneOrMany>,
    sni: Option<String>,
    auth: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Expect {
    allow: bool,
    policy: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    audit: Vec<String>,
    #[serde(default)]
    dry_run: Vec<String>,
    would_be: Option<WouldBe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WouldBe {
    allow: bool,
    policy: Option<String>,
}

#[test]
fn shared_l7_table() {
    let cases: Vec<Case> = ambit_test_util::cases::read("authz/l7-cases.yaml", 35);
    ambit_test_util::cases::check_all(&cases, |c| &c.name, run);
}

fn run(case: &Case) -> Result<(), String> {
    let (policies, warnings) = L7Policies::parse(&case.policies, "l7-cases.yaml", "istio-system")
        .map_err(|e| format!("load: {e}"))?;
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    match &case.warnings {
        None if !warnings.is_empty() => return Err(format!("unexpected warnings {warnings:#?}")),
        None => {}
        Some(want) => {
            for w in want {
                if !warnings.iter().any(|got| got.contains(w.as_str())) {
                    return Err(format!("no warning contains {w:?}; got {warnings:#?}"));
                }
            }
        }
    }

    let service = case.target.service.as_deref().map(|s| {
        s.split_once('/')
            .unwrap_or_else(|| panic!("{}: service must be ns/name", case.name))
    });
    let target = WaypointTarget {
        namespace: case.target.namespace.as_deref().unwrap_or("shop"),
        name: case.target.waypoint.as_deref().unwrap_or("waypoint"),
        service,
    };

    let r = &case.request;
    let id = match (r.plaintext, r.source.as_deref()) {
        (true, _) => None,
        (false, p) => Some(
            SpiffeId::from_principal(p.unwrap_or("cluster.local/ns/shop/sa/frontend"))
                .map_err(|e| format!("source: {e}"))?,
        ),
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &r.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
        let values = match v {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        };
        for v in values {
            headers.append(
                name.clone(),
                HeaderValue::from_str(&v).map_err(|e| e.to_string())?,
            );
        }
    }
    let auth = match &r.auth {
        Some(claims) => {
            Some(RequestAuth::from_claims(claims.clone()).ok_or("auth needs a string iss")?)
        }
        None => None,
    };
    let source_ip = r.source_ip.unwrap_or(IpAddr::from([10, 0, 0, 1]));
    let req = HttpRequest {
        source_id: id.as_ref(),
        source_ip,
        remote_ip: r.remote_ip.unwrap_or(source_ip),
        destination_ip: r.destination_ip.unwrap_or(IpAddr::from([10, 96, 0, 10])),
        destination_port: r.port.unwrap_or(80),
        host: r.host.as_deref().unwrap_or("cart.shop.svc.cluster.local"),
        method: r.method.as_deref().unwrap_or("GET"),
        path: r.path.as_deref().unwrap_or("/"),
        headers: &headers,
        auth: auth.as_ref(),
        sni: r.sni.as_deref(),
    };

    let d = policies.evaluate(&target, &req);
    // The cached form must agree with the direct one.
    let cached = policies.applicable(&target).evaluate(&req);
    if cached != d {
        return Err(format!(
            "applicable() gave {cached:?}, evaluate() gave {d:?}"
        ));
    }
    let keys = |v: &[std::sync::Arc<str>]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let e = &case.expect;
    let mut wrong = Vec::new();
    if d.allowed != e.allow {
        wrong.push(format!("allowed {} (want {})", d.allowed, e.allow));
    }
    if d.policy.as_deref() != e.policy.as_deref() {
        wrong.push(format!("policy {:?} (want {:?})", d.policy, e.policy));
    }
    if let Some(reason) = &e.reason
        && format!("{:?}", d.reason) != *reason
    {
        wrong.push(format!("reason {:?} (want {reason})", d.reason));
    }
    if keys(&d.audit) != e.audit {
        wrong.push(format!("audit {:?} (want {:?})", d.audit, e.audit));
    }
    if keys(&d.dry_run) != e.dry_run {
        wrong.push(format!("dry run {:?} (want {:?})", d.dry_run, e.dry_run));
    }
    if let Some(w) = &e.would_be {
        let got = d.would_be.as_ref().map(|r| (r.allowed, r.policy.clone()));
        if got != Some((w.allow, w.policy.clone())) {
            wrong.push(format!(
                "would be {got:?} (want {:?})",
                (w.allow, &w.policy)
            ));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{} — {}", d, wrong.join(", ")))
    }
}
