//! The Gateway API conformance suite's mesh (GAMMA) cases end to end: the suite's mesh
//! namespace on loopback (Services `echo`, `echo-v1`, `echo-v2` behind the waypoint, an echo pod
//! per version on node B, client pods in the mesh and the consumer namespace on node A), each
//! test's routes loaded into a running waypoint, and every case sent by its client through
//! SOCKS5 → HBONE → waypoint → HBONE → the echo pod. Checked as the suite's mesh client checks:
//! the status, the pod that answered, the request headers the pod saw, the response headers.

use std::collections::BTreeMap;

use ambit_test_util::conformance::{Case, Test};
use ambit_waypoint::L7Config;
use http::HeaderMap;

use super::*;

const NS: &str = "gateway-conformance-mesh";
const CONSUMER_NS: &str = "gateway-conformance-mesh-consumer";
const NET: u8 = 61;

/// Both clients on node A (1.2 in the mesh namespace, 1.3 in the consumer one), `echo-v1`
/// (2.2) and `echo-v2` (2.3) on node B, the waypoint at 3.2; `echo` (VIP 100.1) selects both
/// versions, `echo-v1` / `echo-v2` (100.2 / 100.3) one each, on ports 80 and 8080.
fn mesh_state() -> State {
    let mut s = State::new();
    for (name, ns, host) in [("client", NS, [1, 2]), ("client", CONSUMER_NS, [1, 3])] {
        s.insert_workload(workload(NET, name, ns, "default", "node-a", host))
            .expect("client");
    }
    let ports = [(80, 8080), (8080, 8080)];
    for (pod, host, svcs) in [
        ("echo-v1", [2, 2], ["echo", "echo-v1"]),
        ("echo-v2", [2, 3], ["echo", "echo-v2"]),
    ] {
        let mut w = workload(NET, pod, NS, "default", "node-b", host);
        for svc in svcs {
            w.services.insert(
                format!("{NS}/{svc}.{NS}.svc.cluster.local"),
                ports.into_iter().collect(),
            );
        }
        s.insert_workload(w).expect("echo");
    }
    s.insert_workload(workload(NET, "waypoint", NS, "waypoint", "none", [3, 2]))
        .expect("waypoint");
    let wp = GatewayAddress::ip(ip(NET, [3, 2]));
    for (name, vip) in [
        ("echo", [100, 1]),
        ("echo-v1", [100, 2]),
        ("echo-v2", [100, 3]),
    ] {
        let mut svc = service(NET, name, NS, vip, &ports);
        svc.waypoint = Some(wp.clone());
        s.insert_service(svc);
    }
    s
}

/// An echo pod: answers 200 with `pod=<name>` and one `<header>=<value>` line per request
/// header, and sets the response headers `X-Echo-Set-Header` asks for (`name:value,...`), as
/// the suite's echo server does.
async fn echo_pod(addr: SocketAddr, pod: &'static str) {
    let l = TcpListener::bind(addr).await.expect("bind echo");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |r: Request<hyper::body::Incoming>| async move {
                        let mut body = format!("pod={pod}-0\n");
                        for (k, v) in r.headers() {
                            body.push_str(&format!(
                                "{k}={}\n",
                                String::from_utf8_lossy(v.as_bytes())
                            ));
                        }
                        let mut resp = Response::builder().status(200);
                        if let Some(set) = r
                            .headers()
                            .get("x-echo-set-header")
                            .and_then(|v| v.to_str().ok())
                        {
                            for pair in set.split(',').filter(|p| !p.is_empty()) {
                                if let Some((k, v)) = pair.split_once(':') {
                                    resp = resp.header(k, v);
                                }
                            }
                        }
                        Ok::<_, Infallible>(
                            resp.body(Full::new(Bytes::from(body))).expect("response"),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}

/// The VIP of the Service a mesh host names (`name[.namespace][:port]`), and the port.
fn vip(host: &str) -> Option<([u8; 2], u16)> {
    let (name, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (host, 80),
    };
    let svc = name.split('.').next()?;
    let ns = name.split('.').nth(1).unwrap_or(NS);
    if ns != NS {
        return None;
    }
    let vip = match svc {
        "echo" => [100, 1],
        "echo-v1" => [100, 2],
        "echo-v2" => [100, 3],
        _ => return None,
    };
    Some((vip, port))
}

/// What came back: status, the answering pod, the request headers it saw, response headers.
struct Answer {
    status: u16,
    pod: Option<String>,
    seen: BTreeMap<String, Vec<String>>,
    headers: HeaderMap,
}

async fn send(a: &NodeProxy, case: &Case) -> Result<Answer, String> {
    let host = case.request.host.clone().unwrap_or_else(|| "echo".into());
    let (vip, port) = vip(&host).ok_or_else(|| format!("host {host:?} is not a Service here"))?;
    let from = match case.client_namespace.as_deref() {
        Some(CONSUMER_NS) => [1, 3],
        _ => [1, 2],
    };
    let proxy = a.bound().socks5.ok_or("no SOCKS5 listener")?;
    let to = SocketAddr::new(ip(NET, vip), port);
    let s = socks5_connect(proxy, ip(NET, from), &SocksTarget::Addr(to))
        .await
        .map_err(|e| format!("socks5: {e:?}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut b = Request::builder()
        .method(case.request.method.as_deref().unwrap_or("GET"))
        .uri(case.request.path.as_deref().unwrap_or("/"))
        .header("host", &host);
    for (k, v) in &case.request.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let set: Vec<String> = case
        .backend_set_response_headers
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    b = b.header("x-echo-set-header", set.join(","));
    let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .map_err(|_| "no response in time".to_string())?
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    let mut pod = None;
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("pod=") {
            pod = Some(p.to_owned());
        } else if let Some((k, v)) = line.split_once('=') {
            seen.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    Ok(Answer {
        status,
        pod,
        seen,
        headers,
    })
}

/// The suite's mesh `compareRequest`.
fn compare(case: &Case, got: &Answer) -> Result<(), String> {
    let mut statuses = case.response.statuses.clone();
    statuses.extend(case.response.status);
    if statuses.is_empty() {
        statuses.push(200);
    }
    if !statuses.contains(&got.status) {
        return Err(format!("status {}, want one of {statuses:?}", got.status));
    }
    if let Some(want) = &case.expected_request {
        for (name, value) in want.headers.iter().flatten() {
            let v = got
                .seen
                .get(&name.to_ascii_lowercase())
                .map(|v| v.join(","));
            if v.as_deref() != Some(value.as_str()) {
                return Err(format!("the pod saw {name}: {v:?}, want {value:?}"));
            }
        }
        for name in &want.absent_headers {
            if got.seen.contains_key(&name.to_ascii_lowercase()) {
                return Err(format!("the pod saw {name}, which must be absent"));
            }
        }
    }
    for name in &case.response.absent_headers {
        if got.headers.contains_key(name.to_ascii_lowercase().as_str()) {
            return Err(format!("response header {name} must be absent"));
        }
    }
    for (name, value) in &case.response.headers {
        let v = got
            .headers
            .get(name.to_ascii_lowercase().as_str())
            .and_then(|v| v.to_str().ok());
        if v != Some(value.as_str()) {
            return Err(format!("response header {name}: {v:?}, want {value:?}"));
        }
    }
    let pod = got.pod.as_deref().unwrap_or_default();
    if !pod.starts_with(&case.backend) {
        return Err(format!("answered by {pod:?}, want {:?}", case.backend));
    }
    Ok(())
}

fn l7(test: &Test) -> L7Config {
    let (l7, _warnings) = L7Config::from_yaml(&test.manifests, "manifests.yaml", "istio-system")
        .expect("routes load");
    l7
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_conformance_cases_hold_through_real_hbone() {
    let (suite, apply) = ambit_test_util::conformance::read();
    let pki = TestPki::new();
    let st = mesh_state();
    let (a, _b) = two_nodes(NET, st.clone(), &pki, Listeners::Socks5)
        .await
        .expect("nodes");
    echo_pod(SocketAddr::new(ip(NET, [2, 2]), 8080), "echo-v1").await;
    echo_pod(SocketAddr::new(ip(NET, [2, 3]), 8080), "echo-v2").await;
    let id = TrustDomain::new("cluster.local")
        .expect("td")
        .workload_id(NS, "waypoint")
        .expect("id");
    let mut wc = WaypointConfig::new("waypoint", NS, id);
    wc.hbone = SocketAddr::new(ip(NET, [3, 2]), 15008);
    wc.metrics = None;
    wc.readiness = None;
    let waypoint = Waypoint::start(wc, st, L7Config::default(), pki.source(), pki.tls.clone())
        .await
        .expect("waypoint");

    let mut failures = Vec::new();
    let (mut tests, mut cases) = (0, 0);
    for test in suite
        .tests
        .iter()
        .filter(|t| t.role == "mesh" && apply.runs(&t.name))
    {
        // A case aimed at something this loopback mesh does not have (a cluster IP) is left
        // to the route runner.
        let runnable: Vec<&Case> = test
            .cases
            .iter()
            .filter(|c| vip(c.request.host.as_deref().unwrap_or("echo")).is_some())
            // This client speaks HTTP/1.1; gRPC cases are checked by the route runner.
            .filter(|c| c.grpc.is_none())
            .collect();
        if runnable.is_empty() {
            continue;
        }
        waypoint.update_l7(l7(test));
        tests += 1;
        for case in runnable {
            cases += 1;
            let result = match send(&a, case).await {
                Ok(got) => compare(case, &got),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                failures.push(format!("{} / {}: {e}", test.name, case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} mesh cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        tests >= 15 && cases >= 50,
        "only {tests} tests, {cases} cases ran"
    );
}

const CORS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 80}]
  rules:
  - filters:
    - type: CORS
      cors: {allowOrigins: ["https://shop.example"], allowMethods: [GET, PUT], maxAge: 60}
    backendRefs: [{name: reviews-v1, port: 80}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cors_preflight_is_answered_by_the_waypoint_and_responses_carry_the_origin() {
    let mesh = Mesh::start(62, CORS).await;
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri("/items")
        .header("host", "reviews")
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "PUT")
        .body(Full::new(Bytes::new()))
        .expect("req");
    let (status, body, headers) = mesh.request([100, 1], preflight).await;
    assert_eq!(status, 200);
    assert!(
        !body.starts_with("app="),
        "a preflight is not forwarded: {body}"
    );
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        h("access-control-allow-origin").as_deref(),
        Some("https://shop.example")
    );
    assert_eq!(
        h("access-control-allow-methods").as_deref(),
        Some("GET, PUT")
    );
    assert_eq!(h("access-control-max-age").as_deref(), Some("60"));

    let get = Request::get("/items")
        .header("host", "reviews")
        .header("origin", "https://shop.example")
        .body(Full::new(Bytes::new()))
        .expect("req");
    let (status, body, headers) = mesh.request([100, 1], get).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("app=reviews-v1"), "{body}");
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://shop.example")
    );
}
