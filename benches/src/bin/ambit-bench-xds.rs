//! How fast and how small the xDS client's state is at mesh scale: a full push of 10,000
//! workloads, 2,000 services and 1,000 policies decoded from wire bytes and applied
//! (`ambit_xds::Resources`, what the client runs per response), the memory it holds per
//! workload, and one workload's update in that state, publish included (the O(1) clone the
//! proxy receives).
//!
//! `cargo run --release -p ambit-benches --bin ambit-bench-xds -- [--quick] [--json FILE]`

use std::collections::HashMap;
use std::time::Instant;

use ambit_benches::{proc, report};
use ambit_xds::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, Resource};
use ambit_xds::pb::istio::security as sec;
use ambit_xds::pb::istio::workload as wl;
use ambit_xds::{ADDRESS_TYPE, AUTHORIZATION_TYPE, Resources};
use anyhow::{Context, Result};
use prost::Message;

/// mimalloc (as the daemons use), counting the bytes live, so the state's own size is read
/// exactly rather than through RSS (which also holds freed pages and the decoded response).
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is passed on to mimalloc unchanged, with the same layout; only a counter
// is updated beside it. A measured need: the target is bytes per workload, which RSS cannot
// tell apart from allocator slack.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, std::sync::atomic::Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with `layout`; the caller's contract holds.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

struct Scale {
    workloads: usize,
    services: usize,
    policies: usize,
    namespaces: usize,
    nodes: usize,
}

fn any(type_url: &str, value: Vec<u8>) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_owned(),
        value,
    }
}

fn workload(i: usize, s: &Scale, version: u32) -> (String, Vec<u8>) {
    let ns = format!("ns-{}", i % s.namespaces);
    let svc = i % s.services;
    let uid = format!("Kubernetes//Pod/{ns}/app-{i}");
    let ip = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    let w = wl::Workload {
        uid: uid.clone(),
        name: format!("app-{i}"),
        namespace: ns.clone(),
        addresses: vec![ip.to_vec()],
        tunnel_protocol: wl::TunnelProtocol::Hbone as i32,
        service_account: format!("sa-{}", i % 50),
        node: format!("node-{}", i % s.nodes),
        canonical_name: format!("app-{}", i % 500),
        canonical_revision: format!("v{version}"),
        workload_name: format!("app-{}", i % 500),
        cluster_id: "Kubernetes".into(),
        services: [(
            format!(
                "ns-{}/svc-{svc}.ns-{}.svc.cluster.local",
                svc % s.namespaces,
                svc % s.namespaces
            ),
            wl::PortList {
                ports: vec![wl::Port {
                    service_port: 80,
                    target_port: 8080,
                    app_protocol: 0,
                }],
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let a = wl::Address {
        r#type: Some(wl::address::Type::Workload(w)),
    };
    (uid, a.encode_to_vec())
}

fn service(i: usize, s: &Scale) -> (String, Vec<u8>) {
    let ns = format!("ns-{}", i % s.namespaces);
    let host = format!("svc-{i}.{ns}.svc.cluster.local");
    let svc = wl::Service {
        name: format!("svc-{i}"),
        namespace: ns.clone(),
        hostname: host.clone(),
        addresses: vec![wl::NetworkAddress {
            network: String::new(),
            address: vec![172, 20, (i >> 8) as u8, i as u8],
            length: None,
        }],
        ports: vec![wl::Port {
            service_port: 80,
            target_port: 8080,
            app_protocol: 0,
        }],
        ..Default::default()
    };
    let a = wl::Address {
        r#type: Some(wl::address::Type::Service(svc)),
    };
    (format!("{ns}/{host}"), a.encode_to_vec())
}

fn policy(i: usize, s: &Scale) -> (String, Vec<u8>) {
    let ns = format!("ns-{}", i % s.namespaces);
    let exact = |v: String| sec::StringMatch {
        match_type: Some(sec::string_match::MatchType::Exact(v)),
    };
    let a = sec::Authorization {
        name: format!("p-{i}"),
        namespace: ns.clone(),
        scope: sec::Scope::Namespace as i32,
        action: sec::Action::Allow as i32,
        rules: vec![sec::Rule {
            clauses: vec![sec::Clause {
                matches: vec![sec::Match {
                    principals: vec![exact(format!("cluster.local/ns/{ns}/sa/sa-{}", i % 50))],
                    destination_ports: vec![8080],
                    ..Default::default()
                }],
            }],
        }],
        ..Default::default()
    };
    (format!("{ns}/p-{i}"), a.encode_to_vec())
}

fn response(type_url: &str, resources: Vec<(String, Vec<u8>)>, version: &str) -> Vec<u8> {
    DeltaDiscoveryResponse {
        type_url: type_url.to_owned(),
        nonce: "n".into(),
        resources: resources
            .into_iter()
            .map(|(name, value)| Resource {
                name,
                version: version.to_owned(),
                resource: Some(any(type_url, value)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Decodes and applies wire bytes, as the client does with a response.
fn apply(r: &mut Resources, bytes: &[u8]) -> Result<()> {
    let resp = DeltaDiscoveryResponse::decode(bytes).context("decode")?;
    let applied = r.apply(&resp);
    anyhow::ensure!(
        applied.refusals.is_empty(),
        "refused: {:?}",
        applied.refusals
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1).cloned());
    let s = Scale {
        workloads: 10_000,
        services: 2_000,
        policies: 1_000,
        namespaces: 100,
        nodes: 100,
    };
    let mut addresses: Vec<_> = (0..s.workloads).map(|i| workload(i, &s, 1)).collect();
    addresses.extend((0..s.services).map(|i| service(i, &s)));
    let address_bytes = response(ADDRESS_TYPE, addresses, "1");
    let policy_bytes = response(
        AUTHORIZATION_TYPE,
        (0..s.policies).map(|i| policy(i, &s)).collect(),
        "1",
    );
    let runs = if quick { 3 } else { 7 };

    // Memory held, measured first in the process so no freed memory is reused: RSS growth
    // from before the push to after it (an upper bound: the decoded response is counted too).
    let (before, heap_before) = (proc::rss_kib(), live());
    let mut held = Resources::new(ambit_state::State::new());
    apply(&mut held, &address_bytes)?;
    apply(&mut held, &policy_bytes)?;
    let (after, heap_after) = (proc::rss_kib(), live());
    let kib_per_workload = (after.saturating_sub(before)) as f64 / s.workloads as f64;
    let heap_per_workload = heap_after.saturating_sub(heap_before) as f64 / s.workloads as f64;

    // A full push, from bytes to the state the proxy is handed.
    let mut full = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut r = Resources::new(ambit_state::State::new());
        apply(&mut r, &address_bytes)?;
        apply(&mut r, &policy_bytes)?;
        let published = r.state().clone();
        full.push(start.elapsed());
        anyhow::ensure!(
            published.workload_count() == s.workloads,
            "not all workloads applied"
        );
        anyhow::ensure!(
            published.service_count() == s.services,
            "not all services applied"
        );
    }

    // One workload changing in that state (a new revision, each push), publish included.
    let updates: Vec<Vec<u8>> = (0..2)
        .map(|v| {
            response(
                ADDRESS_TYPE,
                vec![workload(4242, &s, 2 + v)],
                &format!("u{v}"),
            )
        })
        .collect();
    let n = if quick { 2_000 } else { 20_000 };
    let mut one = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        apply(&mut held, &updates[i % 2])?;
        let published = held.state().clone();
        one.push(start.elapsed());
        drop(published);
    }
    one.sort();
    let p99 = one[one.len() * 99 / 100];

    let full_ms = report::median(
        full.iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect::<Vec<_>>(),
    );
    let one_us = report::median(
        one.iter()
            .map(|d| d.as_secs_f64() * 1e6)
            .collect::<Vec<_>>(),
    );
    println!(
        "full push of {} workloads + {} services + {} policies: {full_ms:.1} ms (median of {runs}; target < 500 ms)",
        s.workloads, s.services, s.policies
    );
    println!(
        "memory held: {heap_per_workload:.0} bytes per workload on the heap ({:.1} MiB for the whole state, services and policies included; target < 1.5 KB); RSS grew {kib_per_workload:.2} KiB per workload (with the decoded response and allocator slack)",
        heap_after.saturating_sub(heap_before) as f64 / (1 << 20) as f64
    );
    println!(
        "one workload updated and published: {one_us:.1} µs median, {:.1} µs p99 (of {n}; target < 50 µs)",
        p99.as_secs_f64() * 1e6
    );
    if let Some(path) = json {
        let mut m = HashMap::new();
        m.insert("full_push_ms", full_ms);
        m.insert("rss_kib_per_workload", kib_per_workload);
        m.insert("heap_bytes_per_workload", heap_per_workload);
        m.insert("one_update_us_median", one_us);
        m.insert("one_update_us_p99", p99.as_secs_f64() * 1e6);
        let text = format!(
            "{{{}}}\n",
            m.iter()
                .map(|(k, v)| format!("\"{k}\": {v:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        std::fs::write(&path, text).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}
