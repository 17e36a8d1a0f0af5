//! Pod network namespaces, and the sockets made inside them.
//!
//! A socket belongs to the network namespace of the thread that created it, for its whole
//! life. So only `socket()` has to happen inside a pod's namespace: binding, listening,
//! connecting and all I/O then run on tokio as usual. The creating is done by one thread of
//! ambit's own ([`NetnsRunner`]) that enters the pod's namespace before each job; a tokio worker
//! never changes namespace.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};

/// The mark on every socket made for a pod (Istio's in-pod mark, 1337): istio-cni's rules in
/// the pod let marked packets past the redirects, so the proxy's own traffic is not captured
/// again, and route the replies to transparent sockets back to them.
pub const INPOD_MARK: u32 = 0x539;

/// `statfs` type of the namespace filesystem (a `/proc/<pid>/ns/net` link or a bind mount of one).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// A pod's network namespace, held open by its file descriptor.
#[derive(Debug)]
pub struct Netns {
    fd: OwnedFd,
    /// Device and inode: the same namespace through another descriptor has the same pair.
    id: (u64, u64),
}

/// Why a descriptor cannot be used as a pod's network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// `fstat`/`fstatfs` failed.
    #[error("cannot inspect the descriptor: {0}")]
    Inspect(std::io::Error),
    /// Not a namespace at all.
    #[error("the descriptor is not a network namespace (filesystem type {0:#x})")]
    NotANamespace(i64),
}

impl Netns {
    /// Takes `fd` as a network namespace, refusing what is not a namespace.
    pub fn new(fd: OwnedFd) -> Result<Self, NetnsError> {
        let fs = rustix::fs::fstatfs(&fd).map_err(|e| NetnsError::Inspect(e.into()))?;
        #[allow(clippy::unnecessary_cast)]
        let ftype = fs.f_type as i64;
        if ftype != NSFS_MAGIC {
            return Err(NetnsError::NotANamespace(ftype));
        }
        let st = rustix::fs::fstat(&fd).map_err(|e| NetnsError::Inspect(e.into()))?;
        #[allow(clippy::unnecessary_cast)]
        let id = (st.st_dev as u64, st.st_ino as u64);
        Ok(Self { fd, id })
    }

    /// Whether `other` is the same namespace.
    pub fn same_as(&self, other: &Netns) -> bool {
        self.id == other.id
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread that makes sockets inside pods' namespaces (started on first use; a new one
/// replaces it if it ever ends).
#[derive(Debug, Default)]
pub struct NetnsRunner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl NetnsRunner {
    /// Runs `make` inside `ns` on the runner's thread and returns what it made.
    async fn run<T, F>(&self, ns: &Arc<Netns>, make: F) -> std::io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> std::io::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ns = ns.clone();
        let job: Job = Box::new(move || {
            // Every job enters its own namespace first, so where the thread was left by the
            // previous one never matters.
            let r = rustix::thread::move_into_link_name_space(
                ns.fd.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| {
                std::io::Error::new(
                    std::io::Error::from(e).kind(),
                    format!("cannot enter the pod's network namespace: {e}"),
                )
            })
            .and_then(|()| make());
            let _ = tx.send(r);
        });
        self.submit(job)?;
        rx.await
            .map_err(|_| std::io::Error::other("the namespace thread stopped"))?
    }

    fn submit(&self, job: Job) -> std::io::Result<()> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let job = match jobs.as_ref() {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                // The thread ended: start another.
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ambit-netns".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })?;
        tx.send(job)
            .map_err(|_| std::io::Error::other("the namespace thread stopped"))?;
        *jobs = Some(tx);
        Ok(())
    }
}

/// Makes a pod's sockets: created in its namespace, marked [`INPOD_MARK`].
#[derive(Debug)]
pub struct PodSockets {
    uid: String,
    ns: Arc<Netns>,
    runner: Arc<NetnsRunner>,
}

impl PodSockets {
    /// Sockets for pod `uid` in `ns`.
    pub fn new(uid: &str, ns: Arc<Netns>, runner: Arc<NetnsRunner>) -> Self {
        Self {
            uid: uid.to_owned(),
            ns,
            runner,
        }
    }

    /// The pod's namespace.
    pub fn netns(&self) -> &Arc<Netns> {
        &self.ns
    }

    async fn raw(&self, v6: bool, ty: SocketType) -> std::io::Result<OwnedFd> {
        let family = if v6 {
            AddressFamily::INET6
        } else {
            AddressFamily::INET
        };
        let fd = self
            .runner
            .run(&self.ns, move || {
                rustix::net::socket_with(
                    family,
                    ty,
                    SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                    None,
                )
                .map_err(std::io::Error::from)
            })
            .await?;
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::Mark, &INPOD_MARK).map_err(
            |e| {
                std::io::Error::new(
                    std::io::Error::from(e).kind(),
                    format!("cannot mark the pod's socket (SO_MARK needs CAP_NET_ADMIN): {e}"),
                )
            },
        )?;
        Ok(fd)
    }

    /// A TCP socket for connecting out of the pod.
    pub async fn tcp(&self, v6: bool) -> std::io::Result<TcpSocket> {
        let fd = self.raw(v6, SocketType::STREAM).await?;
        Ok(TcpSocket::from_std_stream(std::net::TcpStream::from(fd)))
    }

    /// A TCP socket connecting out of the pod *from* `source` (another pod's address, so the
    /// application sees its real client): transparent, best effort — when the address cannot be
    /// used the socket is the pod's own.
    pub async fn tcp_from(
        &self,
        source: std::net::IpAddr,
        dst: SocketAddr,
    ) -> std::io::Result<TcpSocket> {
        let socket = self.tcp(dst.is_ipv6()).await?;
        if source.is_ipv4() == dst.is_ipv4() && source != dst.ip() {
            let transparent = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::IpTransparent,
                &true,
            );
            let _ = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::IpBindAddressNoPort,
                &true,
            );
            if transparent.is_err() || socket.bind(SocketAddr::new(source, 0)).is_err() {
                tracing::debug!(%source, "cannot connect from the client's address; using the pod's own");
                return self.tcp(dst.is_ipv6()).await;
            }
        }
        Ok(socket)
    }

    /// A TCP listener on `addr` inside the pod (SO_REUSEPORT, so an old and a new proxy can
    /// overlap; transparent where allowed, as ztunnel's).
    pub async fn listen(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let socket = self.tcp(addr.is_ipv6()).await?;
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        if addr.is_ipv6() {
            rustix::net::sockopt::set_ipv6_v6only(&socket, false)?;
        }
        let _ =
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::IpTransparent, &true);
        socket.bind(addr)?;
        socket.listen(128)
    }

    /// A UDP socket bound to `addr` inside the pod.
    pub async fn udp(&self, addr: SocketAddr) -> std::io::Result<UdpSocket> {
        let fd = self.raw(addr.is_ipv6(), SocketType::DGRAM).await?;
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
        rustix::net::bind(&fd, &addr)?;
        UdpSocket::from_std(std::net::UdpSocket::from(fd))
    }
}

impl ambit_hbone::SocketFactory for PodSockets {
    fn tcp_socket(
        &self,
        peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<TcpSocket>> + Send + '_>> {
        Box::pin(self.tcp(peer.is_ipv6()))
    }

    fn pool_key(&self) -> &str {
        &self.uid
    }
}
