//! ztunnel-shaped local config: loading, lookups, and errors that name file, object and field.

use std::net::IpAddr;

use ambit_authz::{Connection, Reason};
use ambit_state::local;

const CONFIG: &str = r#"
workloads:
- uid: cluster1//v1/Pod/demo/app-a
  name: app-a
  namespace: demo
  serviceAccount: app-a
  workloadIps: ["127.0.1.2"]
  protocol: HBONE
  node: node-a
  canonicalName: app-a
  canonicalRevision: v1
  labels: {app: a}
  services:
    "demo/app-a.demo.svc.cluster.local": {80: 8080}
- uid: cluster1//v1/Pod/demo/app-b
  name: app-b
  namespace: demo
  serviceAccount: app-b
  workloadIps: ["127.0.1.3"]
  protocol: TCP
  node: node-b
policies:
- name: only-from-b
  namespace: demo
  scope: Namespace
  action: Allow
  rules:
  - - - principals: [{Exact: "cluster.local/ns/demo/sa/app-b"}]
        destinationPorts: [8080]
services:
- name: app-a
  namespace: demo
  hostname: app-a.demo.svc.cluster.local
  vips: ["/10.96.0.10"]
  ports: {80: 8080}
istioPolicies:
- apiVersion: security.istio.io/v1
  kind: AuthorizationPolicy
  metadata: {name: deny-legacy, namespace: demo}
  spec:
    action: DENY
    rules:
    - from: [{source: {namespaces: ["legacy"]}}]
"#;

#[test]
fn loads_and_looks_up() {
    let cfg = local::parse(CONFIG, "local.yaml").expect("loads");
    let s = &cfg.state;
    let a = s
        .workload_by_addr("", "127.0.1.2".parse().expect("ip"))
        .expect("app-a");
    assert_eq!(a.name, "app-a");
    assert_eq!(
        a.identity().expect("id").as_str(),
        "spiffe://cluster.local/ns/demo/sa/app-a"
    );
    let svc = s
        .service_by_vip("", "10.96.0.10".parse().expect("ip"))
        .expect("vip");
    assert_eq!(svc.hostname, "app-a.demo.svc.cluster.local");
    assert_eq!(
        s.service_by_hostname("app-a.demo.svc.cluster.local"),
        Some(svc)
    );
    let eps = s.endpoints(svc, 80);
    assert_eq!(eps.len(), 1);
    assert_eq!((eps[0].0.name.as_str(), eps[0].1), ("app-a", 8080));
    // Local-config policy and Istio policy both apply.
    let b_id = s
        .workload_by_addr("", "127.0.1.3".parse().expect("ip"))
        .expect("b")
        .identity()
        .expect("id");
    let conn = |port| Connection {
        source_id: Some(&b_id),
        source_ip: "127.0.1.3".parse::<IpAddr>().expect("ip"),
        destination_ip: "127.0.1.2".parse::<IpAddr>().expect("ip"),
        destination_port: port,
    };
    let policies = s.applicable_policies(a);
    assert_eq!(policies.len(), 2);
    let d = policies.evaluate(&conn(8080));
    assert!(d.allowed);
    assert_eq!(d.policy.as_deref(), Some("demo/only-from-b"));
    assert_eq!(
        policies.evaluate(&conn(9090)).reason,
        Reason::NoAllowMatched
    );
}

#[test]
fn errors_name_file_object_and_field() {
    let cases = [
        (
            "workloads: [{uid: u, name: n, namespace: ns, workloadIps: [not-an-ip]}]",
            "local.yaml: workloads[0] (ns/n): workloadIps[0]: invalid IP address syntax",
        ),
        (
            "workloads: [{uid: u, name: n, namespace: ns, protocol: QUIC}]",
            "local.yaml: workloads[0] (ns/n): protocol: unknown protocol \"QUIC\"",
        ),
        (
            "workloads: [{uid: u, name: n, namespace: \"bad ns\"}]",
            "local.yaml: workloads[0] (bad ns/n): serviceAccount: does not form a SPIFFE id",
        ),
        (
            "policies: [{name: p, namespace: ns, scope: Namespace, action: Allow, rules: [[[{principals: [{Fuzzy: x}]}]]]}]",
            "local.yaml: policies[0] (ns/p): rules[0][0][0].principals[0]: unknown string match \"Fuzzy\"",
        ),
        (
            "services: [{name: s, namespace: ns, hostname: h, vips: [\"/10.0.0.300\"]}]",
            "local.yaml: services[0] (ns/s): vips[0]: \"/10.0.0.300\" is not \"network/IP\"",
        ),
        (
            "policies: [{name: p, namespace: ns, scope: Namespace, action: Maybe}]",
            "local.yaml: policies[0] (ns/p): action: unknown variant `Maybe`",
        ),
        (
            "policies: [{name: p, namespace: ns, scope: Namespace, action: Allow, rules: [[[{sourceIps: [\"x\"]}]]]}]",
            "local.yaml: policies[0] (ns/p): rules[0][0][0].sourceIps[0]: \"x\" is not an IP",
        ),
        (
            "workloads: {not: a list}",
            "local.yaml: document: workloads: invalid type",
        ),
        ("workloads: [", "local.yaml: document: : not valid YAML"),
        (
            "workloads:\n- {uid: a, name: a, namespace: n, workloadIps: [10.0.0.1]}\n- {uid: b, name: b, namespace: n, workloadIps: [10.0.0.1]}",
            "local.yaml: workloads[1] (n/b): : address 10.0.0.1 is already used by workload a",
        ),
        (
            "istioPolicies: [{apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: p, namespace: n}, spec: {action: NOPE}}]",
            "local.yaml: istioPolicies: AuthorizationPolicy n/p: spec.action: unknown action",
        ),
    ];
    for (yaml, want) in cases {
        let err = local::parse(yaml, "local.yaml").expect_err(want);
        assert!(err.to_string().starts_with(want), "got  {err}\nwant {want}");
    }
}

#[test]
fn unknown_fields_warn_with_the_nearest_known_field() {
    let cfg = local::parse(
        "frobnicate: true\nworkloads: [{uid: u, name: n, namespace: ns, servceAccount: x, colour: red}]\n",
        "local.yaml",
    )
    .expect("unknown fields are warnings");
    let got: Vec<String> = cfg.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "local.yaml: document: frobnicate: unknown field; ignored",
            "local.yaml: workloads[0] (ns/n): servceAccount: unknown field; ignored (did you mean `serviceAccount`?)",
            "local.yaml: workloads[0] (ns/n): colour: unknown field; ignored",
        ]
    );
}

#[test]
fn empty_file_is_an_empty_state() {
    let cfg = local::parse("", "empty.yaml").expect("empty is fine");
    assert_eq!(cfg.state.workloads().count(), 0);
}

#[test]
fn waypoints_by_address_hostname_and_weight() {
    let yaml = r#"
workloads:
- uid: wp-1
  name: waypoint-1
  namespace: shop
  serviceAccount: waypoint
  workloadIps: ["10.0.9.9"]
  services: {"shop/waypoint.shop.svc.cluster.local": {15008: 15008}}
- uid: app
  name: app
  namespace: shop
  workloadIps: ["10.0.0.5"]
  waypoint: {destination: "/10.0.9.9"}
services:
- name: cart
  namespace: shop
  hostname: cart.shop.svc.cluster.local
  vips: ["/10.96.0.1"]
  ports: {80: 8080}
  waypoint: {destination: "shop/waypoint.shop.svc.cluster.local", hboneMtlsPort: 15009}
- name: split
  namespace: shop
  hostname: split.shop.svc.cluster.local
  weightedWaypoints:
  - {destination: {destination: "/10.0.9.9"}, weight: 90}
  - {destination: {destination: "/10.0.9.10"}, weight: 10}
"#;
    let cfg = local::parse(yaml, "wp.yaml").expect("loads");
    let s = &cfg.state;
    let app = s.workload("app").expect("app");
    let wp = app.waypoint.as_ref().expect("workload waypoint");
    let (w, addr) = s.resolve_gateway(wp, 7).expect("resolves by address");
    assert_eq!(
        (w.name.as_str(), addr.to_string().as_str()),
        ("waypoint-1", "10.0.9.9:15008")
    );

    let cart = s.service("shop/cart.shop.svc.cluster.local").expect("cart");
    let g = cart.waypoint.as_ref().expect("service waypoint");
    let (w, addr) = s.resolve_gateway(g, 0).expect("resolves by hostname");
    assert_eq!(
        (w.uid.as_str(), addr.to_string().as_str()),
        ("wp-1", "10.0.9.9:15009")
    );

    let split = s
        .service("shop/split.shop.svc.cluster.local")
        .expect("split");
    let weights: Vec<u32> = split.weighted_waypoints.iter().map(|(_, w)| *w).collect();
    assert_eq!(weights, [90, 10]);
    assert!(
        s.resolve_gateway(&split.weighted_waypoints[1].0, 0)
            .is_none(),
        "an unknown waypoint address does not resolve (its identity is unknown)"
    );

    let bad = yaml.replace("\"/10.0.9.9\"}\nservices", "\"nonsense\"}\nservices");
    let e = local::parse(&bad, "wp.yaml").expect_err("refused");
    assert_eq!(e.field, "waypoint.destination", "{e}");
    assert!(e.message.contains("neither"), "{e}");
}

#[test]
fn hostile_yaml_is_refused_without_crashing() {
    // 100,000 levels of nesting: an error, not a stack overflow.
    let deep = format!("workloads: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let t = std::time::Instant::now();
    let e = local::parse(&deep, "deep.yaml").expect_err("refused");
    assert!(e.message.contains("nested too deep"), "{e}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
    let dashes = format!("workloads:\n{}x\n", "- ".repeat(100_000));
    let e = local::parse(&dashes, "dashes.yaml").expect_err("refused");
    assert!(e.message.contains("line 2"), "{e}");

    // An alias bomb (billion laughs): refused or bounded, never expanded into gigabytes.
    let mut bomb =
        String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    for i in 1..12 {
        let prev = (b'a' + (i - 1) as u8) as char;
        let this = (b'a' + i as u8) as char;
        bomb.push_str(&format!(
            "{this}: &{this} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    let started = std::time::Instant::now();
    let r = local::parse(&bomb, "bomb.yaml");
    assert!(r.is_err(), "an alias bomb is not a config");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // A large but valid file: 20,000 workloads load, and every one is findable.
    let mut big = String::from("workloads:\n");
    for i in 0..20_000u32 {
        big.push_str(&format!(
            "- {{uid: w{i}, name: w{i}, namespace: load, workloadIps: [10.{}.{}.{}]}}\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    let cfg = local::parse(&big, "big.yaml").expect("big file loads");
    assert_eq!(cfg.state.workloads().count(), 20_000);
    assert!(
        cfg.state
            .workload_by_addr("", "10.0.78.31".parse().expect("ip"))
            .is_some_and(|w| w.name == "w19999")
    );
}

#[test]
fn every_field_of_ztunnels_local_config_loads_and_lands() {
    use ambit_state::{
        AppTunnelProtocol, HealthPolicy, IpFamilies, LbMode, LbScope, NetworkMode, Visibility,
        WorkloadStatus,
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/ztunnel/every-field.yaml");
    let loaded = local::load_file(&path).expect("ztunnel's format loads");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let s = &loaded.state;
    let cart = s.workload("east//v1/Pod/shop/cart-5f6d").expect("cart");
    assert_eq!(cart.addresses.len(), 2);
    assert_eq!(
        cart.identity().expect("id").to_string(),
        "spiffe://corp.example/ns/shop/sa/cart"
    );
    assert_eq!(
        (cart.network.as_str(), cart.node.as_str(), cart.capacity),
        ("east", "worker-1", 4)
    );
    assert_eq!(
        cart.locality.as_ref().map(|l| l.zone.as_str()),
        Some("eu-central-1a")
    );
    assert_eq!(cart.authorization_policies, ["shop/cart-ingress"]);
    assert!(cart.network_gateway.is_some() && cart.waypoint.is_some());
    let wp = s
        .workload("east//v1/Pod/shop/shop-wp-0")
        .expect("waypoint pod");
    let tunnel = wp.application_tunnel.expect("application tunnel");
    assert_eq!(
        (tunnel.protocol, tunnel.port),
        (AppTunnelProtocol::Proxy, Some(15088))
    );
    let db = s.workload("east//v1/Pod/shop/legacy-db-0").expect("db");
    assert_eq!(
        (db.network_mode, db.status),
        (NetworkMode::HostNetwork, WorkloadStatus::Unhealthy)
    );
    let ext = s
        .workload("east/networking.istio.io/WorkloadEntry/shop/ext-api")
        .expect("entry");
    assert_eq!(ext.hostname, "api.partner.example");

    let svc = s
        .service("shop/cart.shop.svc.cluster.local")
        .expect("cart service");
    assert_eq!(svc.vips.len(), 2);
    assert_eq!(svc.cidr_vips[0].1.to_string(), "10.97.0.0/24");
    assert!(svc.canonical);
    assert_eq!(svc.ip_families, IpFamilies::Dual);
    assert_eq!(svc.weighted_waypoints.len(), 2);
    let lb = svc.load_balancing.as_ref().expect("load balancing");
    assert_eq!(
        lb.routing_preference,
        [LbScope::Network, LbScope::Region, LbScope::Zone]
    );
    assert_eq!(
        (lb.mode, lb.health_policy),
        (LbMode::Failover, HealthPolicy::OnlyHealthy)
    );
    // Endpoints: the workload that lists the service, and the one the service lists.
    let eps: Vec<String> = s
        .endpoints(svc, 80)
        .iter()
        .map(|(w, _)| w.name.clone())
        .collect();
    assert_eq!(eps, ["cart-5f6d", "static-ep"]);
    let db_svc = s
        .service("shop/db.shop.svc.cluster.local")
        .expect("db service");
    assert_eq!(db_svc.visibility, Visibility::Namespace);
    let partner = s.service("shop/api.partner.example").expect("partner");
    assert_eq!(
        partner
            .load_balancing
            .as_ref()
            .map(|l| (l.mode, l.health_policy)),
        Some((LbMode::Passthrough, HealthPolicy::AllowAll))
    );

    let p = s.policies();
    let ingress = p.get("shop/cart-ingress").expect("policy");
    let m = &ingress.rules[0].clauses[0].matches[0];
    assert_eq!(m.principals.len(), 2);
    assert_eq!(
        (
            m.not_principals.len(),
            m.namespaces.len(),
            m.not_namespaces.len()
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (m.service_accounts.len(), m.not_service_accounts.len()),
        (1, 1)
    );
    assert_eq!(
        (
            m.destination_ports.as_slice(),
            m.not_destination_ports.as_slice()
        ),
        (&[8081][..], &[9090][..])
    );
    assert!(p.get("shop/shadow-deny-db").expect("dry run").dry_run);
    assert!(p.get("istio-system/mesh-wide").is_some());
}
