//! Steering an outbound connection (Istio reference §1.9): where a connection to an address
//! goes and how — through a waypoint, over HBONE to the endpoint, or as plain TCP.

use std::net::SocketAddr;
use std::sync::Arc;

use ambit_identity::SpiffeId;
use ambit_proxy::{pick, random_u64};
use ambit_state::{GatewayAddress, GatewayDestination, Service, State, TunnelProtocol, Workload};

/// Ports a connection must never target: the proxy's own (loop protection).
pub const ILLEGAL_PORTS: [u16; 4] = [15001, 15006, 15008, 15080];

/// Where an outbound connection goes.
#[derive(Debug, Clone)]
pub(crate) enum Steer {
    /// HBONE to `peer` (`<ip>:15008`) with `:authority` `authority`, expecting one of `expected`.
    Hbone {
        peer: SocketAddr,
        authority: SocketAddr,
        expected: Vec<SpiffeId>,
        workload: Arc<Workload>,
        service: Option<Arc<Service>>,
    },
    /// Plain TCP (a non-mesh workload, or an address outside the mesh).
    Direct {
        addr: SocketAddr,
        workload: Option<Arc<Workload>>,
        service: Option<Arc<Service>>,
    },
}

/// Why no route was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SteerError {
    #[error("service {service} has no port {port}")]
    NoServicePort { service: String, port: u16 },
    #[error("no healthy upstream for service {0}")]
    NoEndpoint(String),
    #[error("port {0} is reserved for the proxy itself")]
    IllegalPort(u16),
    #[error("workload {0} has no usable identity: {1}")]
    Identity(String, String),
    #[error("waypoint {0} is not known (no workload has its address or serves its hostname)")]
    UnknownWaypoint(String),
}

/// Routes a connection from `src` to `dst`: through the destination's waypoint when it has one
/// (service waypoint for service-addressed traffic, workload waypoint for pod-IP traffic, unless
/// `src` is that waypoint), else straight to the endpoint.
pub(crate) fn steer(
    state: &State,
    network: &str,
    src: Option<&Workload>,
    dst: SocketAddr,
) -> Result<Steer, SteerError> {
    if ILLEGAL_PORTS.contains(&dst.port()) {
        return Err(SteerError::IllegalPort(dst.port()));
    }
    let service = state.service_by_vip(network, dst.ip());
    let gateway = match service {
        Some(svc) => service_waypoint(svc),
        None => state
            .workload_by_addr(network, dst.ip())
            .and_then(|w| w.waypoint.as_deref()),
    };
    if let Some(g) = gateway
        && !src.is_some_and(|s| is_waypoint(s, g))
    {
        let (waypoint, peer) = state
            .resolve_gateway(g, random_u64())
            .ok_or_else(|| SteerError::UnknownWaypoint(g.to_string()))?;
        let id = waypoint
            .identity()
            .map_err(|e| SteerError::Identity(waypoint.uid.clone(), e.to_string()))?;
        return Ok(Steer::Hbone {
            peer,
            authority: dst,
            expected: vec![id],
            workload: waypoint,
            service: service.cloned(),
        });
    }
    let (workload, target_port, service) = if let Some(svc) = service {
        if svc.target_port(dst.port()).is_none() {
            return Err(SteerError::NoServicePort {
                service: svc.hostname.clone(),
                port: dst.port(),
            });
        }
        let endpoints = state.endpoints(svc, dst.port());
        let (w, port) =
            pick(&endpoints).ok_or_else(|| SteerError::NoEndpoint(svc.hostname.clone()))?;
        (w, port, Some(svc.clone()))
    } else if let Some(w) = state.workload_by_addr(network, dst.ip()) {
        (w.clone(), dst.port(), None)
    } else {
        return Ok(Steer::Direct {
            addr: dst,
            workload: None,
            service: None,
        });
    };
    let ip = if workload.addresses.contains(&dst.ip()) {
        dst.ip()
    } else {
        workload
            .address()
            .ok_or_else(|| SteerError::NoEndpoint(workload.name.clone()))?
    };
    match workload.protocol {
        TunnelProtocol::None => Ok(Steer::Direct {
            addr: SocketAddr::new(ip, target_port),
            workload: Some(workload),
            service,
        }),
        TunnelProtocol::Hbone => {
            let id = workload
                .identity()
                .map_err(|e| SteerError::Identity(workload.uid.clone(), e.to_string()))?;
            let mut expected = vec![id];
            if let Some(svc) = &service {
                expected.extend(
                    svc.subject_alt_names
                        .iter()
                        .filter_map(|s| SpiffeId::parse(s).ok()),
                );
            }
            Ok(Steer::Hbone {
                peer: workload.hbone_addr(ip),
                authority: SocketAddr::new(ip, target_port),
                expected,
                workload,
                service,
            })
        }
    }
}

/// The service's waypoint; with weighted waypoints, one chosen by weight (0 = never).
fn service_waypoint(svc: &Service) -> Option<&GatewayAddress> {
    let total: u64 = svc
        .weighted_waypoints
        .iter()
        .map(|(_, w)| u64::from(*w))
        .sum();
    if total == 0 {
        return svc.waypoint.as_ref();
    }
    let mut r = random_u64() % total;
    for (g, w) in &svc.weighted_waypoints {
        let w = u64::from(*w);
        if r < w {
            return Some(g);
        }
        r -= w;
    }
    svc.waypoint.as_ref()
}

/// Whether `w` is (one of the pods of) the waypoint `g`, so its own traffic is not looped back.
fn is_waypoint(w: &Workload, g: &GatewayAddress) -> bool {
    match &g.destination {
        GatewayDestination::Address { ip, .. } => w.addresses.contains(ip),
        GatewayDestination::Hostname {
            namespace,
            hostname,
        } => w.services.contains_key(&format!("{namespace}/{hostname}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use super::*;

    fn wl(uid: &str, ip: [u8; 4]) -> Workload {
        let mut w = Workload::new(uid, uid, "ns", vec![IpAddr::from(ip)]);
        w.protocol = TunnelProtocol::Hbone;
        w
    }

    fn state() -> State {
        let mut s = State::new();
        for (uid, ip) in [
            ("wp-a", [10, 0, 9, 1]),
            ("wp-b", [10, 0, 9, 2]),
            ("client", [10, 0, 1, 1]),
        ] {
            s.insert_workload(wl(uid, ip)).expect("workload");
        }
        let mut app = wl("app", [10, 0, 2, 1]);
        app.waypoint = Some(Box::new(GatewayAddress::ip(IpAddr::from([10, 0, 9, 1]))));
        app.services
            .insert("ns/svc.ns".into(), [(80, 8080)].into_iter().collect());
        s.insert_workload(app).expect("workload");
        let mut svc = Service::new("svc", "ns", "svc.ns");
        svc.vips = vec![(String::new(), IpAddr::from([10, 96, 0, 1]))];
        svc.ports = BTreeMap::from([(80, 8080)]);
        svc.weighted_waypoints = vec![
            (GatewayAddress::ip(IpAddr::from([10, 0, 9, 1])), 90),
            (GatewayAddress::ip(IpAddr::from([10, 0, 9, 2])), 10),
            (GatewayAddress::ip(IpAddr::from([10, 0, 9, 3])), 0),
        ];
        s.insert_service(svc);
        s
    }

    #[test]
    fn service_traffic_goes_to_weighted_waypoints_with_the_vip_as_authority() {
        let s = state();
        let client = s.workload("client").cloned();
        let dst: SocketAddr = "10.96.0.1:80".parse().expect("addr");
        let mut hits: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..2000 {
            match steer(&s, "", client.as_deref(), dst) {
                Ok(Steer::Hbone {
                    peer,
                    authority,
                    workload,
                    ..
                }) => {
                    assert_eq!(authority, dst, "the waypoint sees the original VIP");
                    assert_eq!(peer.port(), 15008);
                    *hits.entry(workload.uid.clone()).or_default() += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        let (a, b) = (hits["wp-a"], hits.get("wp-b").copied().unwrap_or(0));
        assert_eq!(a + b, 2000, "weight 0 is never chosen: {hits:?}");
        // 10% of 2000 = 200, σ ≈ 13.4: ±4σ.
        assert!((146..=254).contains(&b), "{hits:?}");
    }

    #[test]
    fn pod_traffic_goes_to_the_workload_waypoint_unless_it_comes_from_it() {
        let s = state();
        let dst: SocketAddr = "10.0.2.1:8080".parse().expect("addr");
        let client = s.workload("client").cloned();
        match steer(&s, "", client.as_deref(), dst) {
            Ok(Steer::Hbone {
                peer, authority, ..
            }) => {
                assert_eq!(peer, "10.0.9.1:15008".parse().expect("addr"));
                assert_eq!(authority, dst);
            }
            other => panic!("{other:?}"),
        }
        let waypoint = s.workload("wp-a").cloned();
        match steer(&s, "", waypoint.as_deref(), dst) {
            Ok(Steer::Hbone {
                peer, authority, ..
            }) => {
                assert_eq!(peer, "10.0.2.1:15008".parse().expect("addr"), "no loop");
                assert_eq!(authority, dst);
            }
            other => panic!("{other:?}"),
        }
        let mut lost = state();
        let mut app = (**lost.workload("app").expect("app")).clone();
        app.waypoint = Some(Box::new(GatewayAddress::ip(IpAddr::from([10, 0, 9, 99]))));
        lost.insert_workload(app).expect("workload");
        assert!(matches!(
            steer(&lost, "", client.as_deref(), dst),
            Err(SteerError::UnknownWaypoint(_))
        ));
    }
}
