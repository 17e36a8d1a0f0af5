use super::*;

#[test]
fn parses_istio_workload_id() {
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/bookinfo-productpage")
        .expect("valid id");
    assert_eq!(id.trust_domain_name(), "cluster.local");
    assert_eq!(
        id.trust_domain(),
        TrustDomain::new("cluster.local").expect("td")
    );
    assert_eq!(id.path(), "/ns/default/sa/bookinfo-productpage");
    assert_eq!(id.namespace(), Some("default"));
    assert_eq!(id.service_account(), Some("bookinfo-productpage"));
    assert_eq!(
        id.principal(),
        "cluster.local/ns/default/sa/bookinfo-productpage"
    );
    assert_eq!(
        id.to_string(),
        "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    );
}

#[test]
fn display_round_trips() {
    for s in [
        "spiffe://td",
        "spiffe://example.org/a/b/c",
        "spiffe://a-b_c.d/Upper.Case-ok_1/x",
        "spiffe://cluster.local/ns/a/sa/b",
    ] {
        let id: SpiffeId = s.parse().expect(s);
        assert_eq!(id.to_string(), s);
        let printed = id.to_string();
        assert_eq!(SpiffeId::parse(&printed).expect(s), id);
    }
}

#[test]
fn non_istio_paths_have_no_namespace() {
    for s in [
        "spiffe://td",
        "spiffe://td/ns/a",
        "spiffe://td/ns/a/sa",
        "spiffe://td/ns/a/sa/b/extra",
        "spiffe://td/namespace/a/sa/b",
        "spiffe://td/ns/a/serviceaccount/b",
    ] {
        let id = SpiffeId::parse(s).expect(s);
        assert_eq!(id.namespace(), None, "{s}");
        assert_eq!(id.service_account(), None, "{s}");
    }
}

#[test]
fn principal_form_round_trips() {
    let id = SpiffeId::from_principal("td/ns/x/sa/y").expect("principal");
    assert_eq!(id.as_str(), "spiffe://td/ns/x/sa/y");
    assert_eq!(SpiffeId::from_principal(id.as_str()).expect("uri form"), id);
    assert!(SpiffeId::from_principal("TD/ns/x/sa/y").is_err());
}

#[test]
fn workload_id_builder_validates_parts() {
    let td = TrustDomain::new("cluster.local").expect("td");
    assert_eq!(
        td.workload_id("ns1", "sa1").expect("id").as_str(),
        "spiffe://cluster.local/ns/ns1/sa/sa1"
    );
    assert_eq!(td.id().as_str(), "spiffe://cluster.local");
    assert!(td.workload_id("", "sa").is_err());
    assert!(td.workload_id("a/b", "sa").is_err());
}

#[test]
fn rejects_malformed_ids() {
    let long_td = format!("spiffe://{}/x", "a".repeat(256));
    let long_id = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN));
    let cases: Vec<(&str, SpiffeIdError)> = vec![
        ("", SpiffeIdError::Empty),
        ("cluster.local/ns/a/sa/b", SpiffeIdError::WrongScheme),
        ("https://td/ns/a", SpiffeIdError::WrongScheme),
        ("SPIFFE://td/ns/a", SpiffeIdError::WrongScheme),
        ("spiffe:/td/ns/a", SpiffeIdError::WrongScheme),
        ("spiffe://", SpiffeIdError::MissingTrustDomain),
        ("spiffe:///ns/a", SpiffeIdError::MissingTrustDomain),
        (
            "spiffe://Cluster.local/ns/a",
            SpiffeIdError::BadTrustDomainChar {
                found: 'C',
                index: 0,
            },
        ),
        (
            "spiffe://td:8080/ns/a",
            SpiffeIdError::BadTrustDomainChar {
                found: ':',
                index: 2,
            },
        ),
        (
            "spiffe://user@td/ns/a",
            SpiffeIdError::BadTrustDomainChar {
                found: '@',
                index: 4,
            },
        ),
        (
            "spiffe://td?x=1",
            SpiffeIdError::BadTrustDomainChar {
                found: '?',
                index: 2,
            },
        ),
        (&long_td, SpiffeIdError::TrustDomainTooLong { len: 256 }),
        (&long_id, SpiffeIdError::TooLong { len: long_id.len() }),
        ("spiffe://td/", SpiffeIdError::EmptySegment),
        ("spiffe://td//ns", SpiffeIdError::EmptySegment),
        ("spiffe://td/ns/a/", SpiffeIdError::EmptySegment),
        ("spiffe://td/./a", SpiffeIdError::DotSegment),
        ("spiffe://td/ns/../sa", SpiffeIdError::DotSegment),
        (
            "spiffe://td/ns/a%20b",
            SpiffeIdError::BadPathChar {
                found: '%',
                index: 16,
            },
        ),
        (
            "spiffe://td/ns/a?x=1",
            SpiffeIdError::BadPathChar {
                found: '?',
                index: 16,
            },
        ),
        (
            "spiffe://td/ns/a#frag",
            SpiffeIdError::BadPathChar {
                found: '#',
                index: 16,
            },
        ),
        (
            "spiffe://td/ns/é",
            SpiffeIdError::BadPathChar {
                found: 'é',
                index: 15,
            },
        ),
        (
            "spiffe://td/ns a/sa/b",
            SpiffeIdError::BadPathChar {
                found: ' ',
                index: 14,
            },
        ),
        (
            "spiffe://td/ns/a:b",
            SpiffeIdError::BadPathChar {
                found: ':',
                index: 16,
            },
        ),
    ];
    assert!(cases.len() >= 15);
    for (input, want) in cases {
        let got = SpiffeId::parse(input).expect_err(input);
        assert_eq!(got, want, "input {input:?}");
        // Every error renders as a readable sentence.
        assert!(!got.to_string().is_empty());
    }
}

#[test]
fn accepts_limits_exactly() {
    let td = "a".repeat(MAX_TRUST_DOMAIN_LEN);
    assert!(SpiffeId::parse(&format!("spiffe://{td}")).is_ok());
    let prefix = "spiffe://td/";
    let max = format!("{prefix}{}", "a".repeat(MAX_ID_LEN - prefix.len()));
    assert_eq!(max.len(), MAX_ID_LEN);
    assert!(SpiffeId::parse(&max).is_ok());
}

#[test]
fn istio_ids_are_what_parse_makes_of_the_same_string() {
    let long = "a".repeat(MAX_ID_LEN);
    let tds = ["cluster.local", "td", "", "TD", "t d", "caf\u{e9}.io"];
    let parts = [
        "default",
        "ns-1",
        "A_b.c",
        "",
        ".",
        "..",
        "x%2F",
        "caf\u{e9}",
        "a b",
        &long,
    ];
    for td in tds {
        for ns in parts {
            for sa in parts {
                let built = SpiffeId::istio(td, ns, sa);
                let parsed = SpiffeId::parse(&format!("spiffe://{td}/ns/{ns}/sa/{sa}"));
                assert_eq!(built, parsed, "{td:?} {ns:?} {sa:?}");
            }
        }
    }
    // A '/' inside a part is refused, not taken as two segments.
    assert!(matches!(
        SpiffeId::istio("td", "a/b", "sa"),
        Err(SpiffeIdError::BadPathChar {
            found: '/',
            index: 16
        })
    ));
}
