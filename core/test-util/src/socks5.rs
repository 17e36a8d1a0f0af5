//! A SOCKS5 client: how applications (and tests, benches, the demo) reach a node proxy's
//! explicit outbound port, from a given workload address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Where a SOCKS5 CONNECT should go.
#[derive(Debug, Clone)]
pub enum SocksTarget {
    /// An address.
    Addr(SocketAddr),
    /// A host name (resolved by the proxy) and port.
    Host(String, u16),
}

/// Why a SOCKS5 CONNECT failed: the proxy's reply code (RFC 1928), or a transport error.
#[derive(Debug)]
pub enum SocksError {
    /// The proxy refused with this reply code (2 = not allowed by policy).
    Refused(u8),
    /// The proxy could not be talked to.
    Io(std::io::Error),
}

/// Opens a SOCKS5 CONNECT through `proxy`, from local address `from` (how a node proxy knows
/// which workload is asking).
pub async fn socks5_connect(
    proxy: SocketAddr,
    from: IpAddr,
    target: &SocksTarget,
) -> Result<TcpStream, SocksError> {
    let io = SocksError::Io;
    let other = |m: &str| SocksError::Io(std::io::Error::other(m.to_owned()));
    let socket = if from.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io)?;
    socket.bind(SocketAddr::new(from, 0)).map_err(io)?;
    let mut s = socket.connect(proxy).await.map_err(io)?;
    s.write_all(&[5, 1, 0]).await.map_err(io)?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await.map_err(io)?;
    if r != [5, 0] {
        return Err(other("proxy refused the SOCKS5 greeting"));
    }
    let mut req = vec![5, 1, 0];
    let port = match target {
        SocksTarget::Addr(a) => {
            match a.ip() {
                IpAddr::V4(v4) => {
                    req.push(1);
                    req.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    req.push(4);
                    req.extend_from_slice(&v6.octets());
                }
            }
            a.port()
        }
        SocksTarget::Host(h, p) => {
            let len = u8::try_from(h.len()).map_err(|_| other("host name too long"))?;
            req.push(3);
            req.push(len);
            req.extend_from_slice(h.as_bytes());
            *p
        }
    };
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.map_err(io)?;
    let mut rep = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(15), s.read_exact(&mut rep))
        .await
        .map_err(|_| other("no SOCKS5 reply in 15 s"))?
        .map_err(io)?;
    match rep[1] {
        0 => Ok(s),
        code => Err(SocksError::Refused(code)),
    }
}
