//! ZDS, the protocol istio-cni's node agent uses to hand a node proxy its pods: messages and
//! the seqpacket connection that carries them.
//!
//! The agent listens on a Unix `SOCK_SEQPACKET` socket; the proxy connects and sends `ZdsHello`.
//! Each datagram is one protobuf message, and an `AddWorkload` carries the pod's network
//! namespace as an `SCM_RIGHTS` descriptor. The proxy answers every request with exactly one
//! `WorkloadResponse{ack}` and sends nothing else. Field numbers are Istio's public wire
//! contract (`proto/istio/zds/zds.proto` in this repository is the reference).

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendFlags,
    SocketAddrUnix, SocketFlags, SocketType,
};
use tokio::io::Interest;

/// The protocol's messages.
#[allow(missing_docs)] // what prost's derives add to them
pub mod pb {
    /// Protocol version, sent in the hello.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Version {
        /// Never sent.
        NotUsed = 0,
        /// The one version there is.
        V1 = 1,
    }

    /// Proxy → agent, the first datagram on a connection.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ZdsHello {
        /// [`Version`].
        #[prost(enumeration = "Version", tag = "1")]
        pub version: i32,
    }

    /// Who a pod is, as the agent knows it.
    #[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
    pub struct WorkloadInfo {
        /// Pod name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Pod namespace.
        #[prost(string, tag = "2")]
        pub namespace: String,
        /// Service account.
        #[prost(string, tag = "3")]
        pub service_account: String,
    }

    /// Serve this pod (its netns descriptor rides along).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AddWorkload {
        /// The pod's uid.
        #[prost(string, tag = "1")]
        pub uid: String,
        /// Who it is.
        #[prost(message, optional, tag = "2")]
        pub workload_info: Option<WorkloadInfo>,
    }

    /// Keep serving this pod although the agent has no descriptor for it (snapshot only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeepWorkload {
        /// The pod's uid.
        #[prost(string, tag = "1")]
        pub uid: String,
    }

    /// Stop serving this pod.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DelWorkload {
        /// The pod's uid (field 2 is Istio's numbering).
        #[prost(string, tag = "2")]
        pub uid: String,
    }

    /// The end of the snapshot of every pod.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SnapshotSent {}

    /// The answer to a request; an empty error is success.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Ack {
        /// What went wrong, or empty.
        #[prost(string, tag = "1")]
        pub error: String,
    }

    /// Agent → proxy.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WorkloadRequest {
        /// What is asked.
        #[prost(oneof = "Request", tags = "1, 2, 3, 5")]
        pub payload: Option<Request>,
    }

    /// The requests.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Request {
        /// Serve a pod.
        #[prost(message, tag = "1")]
        Add(AddWorkload),
        /// Stop serving a pod.
        #[prost(message, tag = "2")]
        Del(DelWorkload),
        /// Snapshot complete.
        #[prost(message, tag = "3")]
        SnapshotSent(SnapshotSent),
        /// Keep a pod.
        #[prost(message, tag = "5")]
        Keep(KeepWorkload),
    }

    /// Proxy → agent.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WorkloadResponse {
        /// The answer.
        #[prost(oneof = "Response", tags = "1")]
        pub payload: Option<Response>,
    }

    /// The answers.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Response {
        /// Done, or why not.
        #[prost(message, tag = "1")]
        Ack(Ack),
    }
}

/// A request, checked for what the protocol asks of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Serve pod `uid` (its one descriptor is the caller's to take).
    Add {
        /// The pod's uid.
        uid: String,
        /// Who it is.
        info: pb::WorkloadInfo,
    },
    /// Keep pod `uid`.
    Keep(String),
    /// Stop serving pod `uid`.
    Del(String),
    /// The snapshot is complete.
    SnapshotSent,
}

/// Decodes and checks one datagram that came with `fds` descriptors: the text of the error is
/// what the ack says. Never panics, whatever the bytes.
pub fn check(bytes: &[u8], fds: usize, truncated: bool) -> Result<Checked, String> {
    use prost::Message as _;
    if truncated {
        return Err(format!(
            "message refused: longer than {MAX_DATAGRAM} bytes or carrying more than {MAX_FDS} descriptors"
        ));
    }
    let req = pb::WorkloadRequest::decode(bytes)
        .map_err(|e| format!("cannot decode WorkloadRequest: {e}"))?;
    let Some(payload) = req.payload else {
        return Err("WorkloadRequest has no payload".into());
    };
    if !matches!(payload, pb::Request::Add(_)) && fds > 0 {
        return Err(format!(
            "unexpected descriptor: only AddWorkload carries one ({fds} refused)"
        ));
    }
    Ok(match payload {
        pb::Request::Add(add) => {
            if add.uid.is_empty() {
                return Err("AddWorkload without a uid".into());
            }
            let Some(info) = add.workload_info else {
                return Err(format!("AddWorkload {} has no workload_info", add.uid));
            };
            if fds != 1 {
                return Err(format!(
                    "AddWorkload {} must carry exactly one network namespace descriptor, got {fds}",
                    add.uid
                ));
            }
            Checked::Add { uid: add.uid, info }
        }
        pb::Request::Keep(k) => Checked::Keep(k.uid),
        pb::Request::Del(d) => Checked::Del(d.uid),
        pb::Request::SnapshotSent(_) => Checked::SnapshotSent,
    })
}

/// Largest datagram taken whole; a longer one is refused as truncated.
const MAX_DATAGRAM: usize = 4096;
/// Descriptors one datagram may carry before the rest are refused (an add carries one).
const MAX_FDS: usize = 4;

/// One received datagram.
#[derive(Debug)]
pub struct Datagram {
    /// The payload (empty on end of stream).
    pub bytes: Vec<u8>,
    /// Descriptors that came with it.
    pub fds: Vec<OwnedFd>,
    /// Payload or descriptors did not fit and were cut.
    pub truncated: bool,
}

/// A connection to the node agent.
#[derive(Debug)]
pub struct ZdsConn {
    /// tokio has no seqpacket type: its `UnixStream` registers the descriptor with the reactor,
    /// and every read and write here is our own `recvmsg`/`send` through `try_io`, so the
    /// stream semantics are never used.
    fd: tokio::net::UnixStream,
}

impl ZdsConn {
    /// Connects to the agent's socket at `path`.
    pub async fn connect(path: &Path) -> std::io::Result<Self> {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        let addr = SocketAddrUnix::new(path)?;
        // A Unix connect completes at once or fails (EAGAIN: the agent's backlog is full).
        rustix::net::connect(&fd, &addr)?;
        Ok(Self {
            fd: tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))?,
        })
    }

    /// Sends one message as one datagram.
    pub async fn send(&self, msg: &impl prost::Message) -> std::io::Result<()> {
        let bytes = msg.encode_to_vec();
        loop {
            self.fd.writable().await?;
            match self.fd.try_io(Interest::WRITABLE, || {
                rustix::net::send(&self.fd, &bytes, SendFlags::NOSIGNAL)
                    .map_err(std::io::Error::from)
            }) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Receives one datagram with the descriptors it carries.
    pub async fn recv(&self) -> std::io::Result<Datagram> {
        loop {
            self.fd.readable().await?;
            match self
                .fd
                .try_io(Interest::READABLE, || recv_datagram(&self.fd))
            {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }
}

fn recv_datagram(fd: &impl std::os::fd::AsFd) -> std::io::Result<Datagram> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        fd,
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    buf.truncate(got.bytes.min(MAX_DATAGRAM));
    Ok(Datagram {
        bytes: buf,
        fds,
        truncated: got
            .flags
            .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC),
    })
}
