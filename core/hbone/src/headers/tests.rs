use super::*;

#[test]
fn baggage_round_trip_and_istio_keys() {
    let b = Baggage {
        cluster: Some("Kubernetes".into()),
        namespace: Some("default".into()),
        workload_kind: Some("deployment".into()),
        workload_name: Some("productpage-v1".into()),
        service: Some("productpage".into()),
        revision: Some("v1".into()),
        region: None,
        zone: Some("".into()),
    };
    let s = b.encode().expect("something to say");
    assert_eq!(
        s,
        "k8s.cluster.name=Kubernetes,k8s.namespace.name=default,\
         k8s.deployment.name=productpage-v1,service.name=productpage,service.version=v1"
    );
    let mut want = b.clone();
    want.zone = None;
    assert_eq!(Baggage::parse(&s), want);
    assert_eq!(Baggage::default().encode(), None);
}

#[test]
fn baggage_escapes_and_tolerates_junk() {
    let b = Baggage {
        service: Some("a,b;c d%".into()),
        ..Baggage::default()
    };
    let s = b.encode().expect("encoded");
    assert_eq!(s, "service.name=a%2Cb%3Bc%20d%25");
    assert_eq!(Baggage::parse(&s), b);
    let parsed =
        Baggage::parse(" k8s.namespace.name = ns ;prop=1, junk, =x, service.name=%zz, k8s..name=x");
    assert_eq!(parsed.namespace.as_deref(), Some("ns"));
    assert_eq!(parsed.service, None);
    assert_eq!(parsed.workload_kind, None);
}

#[test]
fn baggage_workload_kind_never_overwrites_cluster_or_namespace() {
    for kind in ["cluster", "namespace"] {
        let b = Baggage {
            cluster: Some("c1".into()),
            namespace: Some("shop".into()),
            workload_kind: Some(kind.into()),
            workload_name: Some("other".into()),
            ..Baggage::default()
        };
        let s = b.encode().expect("encoded");
        assert_eq!(s, "k8s.cluster.name=c1,k8s.namespace.name=shop");
        let back = Baggage::parse(&s);
        assert_eq!(back.cluster.as_deref(), Some("c1"));
        assert_eq!(back.namespace.as_deref(), Some("shop"));
    }
}

#[test]
fn forwarded_round_trip() {
    let f = Forwarded {
        for_addr: Some("[fd00::1]:4000".parse().expect("addr")),
        host: Some("reviews.default.svc.cluster.local".into()),
    };
    let s = f.encode().expect("encoded");
    assert_eq!(
        s,
        "for=\"[fd00::1]:4000\";host=reviews.default.svc.cluster.local"
    );
    assert_eq!(Forwarded::parse(&s), f);
    let two = Forwarded::parse("For=\"10.0.0.1:5\";Host=\"a.b\", for=10.9.9.9");
    assert_eq!(two.for_addr, Some("10.0.0.1:5".parse().expect("addr")));
    assert_eq!(two.host.as_deref(), Some("a.b"));
    assert_eq!(Forwarded::parse("for=unknown;by=x").for_addr, None);
    assert_eq!(
        Forwarded::parse("for=10.1.2.3").for_addr,
        Some("10.1.2.3:0".parse().expect("a"))
    );
}

#[test]
fn traceparent_parse_display_random() {
    let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tp: TraceParent = s.parse().expect("valid");
    assert!(tp.sampled());
    assert_eq!(tp.to_string(), s);
    let r = TraceParent::random();
    assert_eq!(r.to_string().len(), 55);
    assert_eq!(r.to_string().parse::<TraceParent>(), Ok(r));
    assert_ne!(TraceParent::random(), r);
    for (bad, err) in [
        ("", TraceParentError::Shape),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            TraceParentError::Shape,
        ),
        (
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            TraceParentError::Version,
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            TraceParentError::Hex,
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            TraceParentError::Zero,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            TraceParentError::Zero,
        ),
        (
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            TraceParentError::Shape,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-0",
            TraceParentError::Shape,
        ),
    ] {
        assert_eq!(bad.parse::<TraceParent>(), Err(err), "{bad:?}");
    }
}
