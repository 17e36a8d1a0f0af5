//! The vocabulary of a mesh on loopback: every test "network" `net` is `127.<net>.0.0/16`, so
//! that tests running in parallel never share an address, and its workloads and services are
//! built the same way everywhere.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ambit_state::{Service, TunnelProtocol, Workload};
use tokio::net::TcpListener;

/// `127.<net>.<host[0]>.<host[1]>`.
pub fn ip(net: u8, host: [u8; 2]) -> IpAddr {
    IpAddr::from([127, net, host[0], host[1]])
}

/// `ip(net, host):port`.
pub fn addr(net: u8, host: [u8; 2], port: u16) -> SocketAddr {
    SocketAddr::new(ip(net, host), port)
}

/// A mesh (HBONE) workload `ns/name` at `ip(net, host)` on `node`, with service account `sa`,
/// its name as canonical service and `v1` as revision.
pub fn workload(net: u8, name: &str, ns: &str, sa: &str, node: &str, host: [u8; 2]) -> Workload {
    let mut w = Workload::new(&format!("{ns}/{name}"), name, ns, vec![ip(net, host)]);
    w.service_account = sa.to_owned();
    w.node = node.to_owned();
    w.protocol = TunnelProtocol::Hbone;
    w.canonical_name = name.to_owned();
    w.canonical_revision = "v1".into();
    w
}

/// Service `ns/name` (`<name>.<ns>.svc.cluster.local`) with VIP `ip(net, vip)` and the
/// `(service port, target port)` mappings `ports`.
pub fn service(net: u8, name: &str, ns: &str, vip: [u8; 2], ports: &[(u16, u16)]) -> Service {
    let mut s = Service::new(name, ns, &format!("{name}.{ns}.svc.cluster.local"));
    s.vips = vec![(String::new(), ip(net, vip))];
    s.ports = ports.iter().copied().collect::<BTreeMap<_, _>>();
    s
}

/// Adds `namespace/hostname` of `svc` to the services `w` backs, with `ports`.
pub fn backs(w: &mut Workload, svc: &Service, ports: &[(u16, u16)]) {
    w.services
        .insert(svc.key(), ports.iter().copied().collect());
}

/// Binds `addr` as soon as whatever held it has let go (`Err` after a generous wait): how a
/// test shows that a stopped listener really released its port.
pub async fn bind_when_free(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if tokio::time::Instant::now() > deadline {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            r => return r,
        }
    }
}
