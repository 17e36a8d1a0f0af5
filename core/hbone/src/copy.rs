//! Copying bytes both ways between two streams, with half-close and adaptive buffers.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// First buffer size per direction.
const INITIAL_BUF: usize = 1024;
/// Buffer size once 128 KiB have flowed in a direction.
const MEDIUM_BUF: usize = 16 * 1024 - 64;
/// Buffer size once 10 MiB have flowed in a direction.
const LARGE_BUF: usize = 256 * 1024 - 64;

/// Bytes moved by [`copy_bidirectional`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transferred {
    /// From `a` to `b`.
    pub a_to_b: u64,
    /// From `b` to `a`.
    pub b_to_a: u64,
}

/// Copies `a → b` and `b → a` until both directions reach EOF. When one side reads EOF the
/// other side's write half is shut down (HBONE: END_STREAM ↔ `shutdown(SHUT_WR)`) and the
/// opposite direction keeps flowing. Buffers start small (many idle connections stay cheap)
/// and grow with the bytes a direction has carried.
pub async fn copy_bidirectional<A, B>(a: A, b: B) -> io::Result<Transferred>
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (a_to_b, b_to_a) = tokio::try_join!(
        copy_one_way(&mut ar, &mut bw),
        copy_one_way(&mut br, &mut aw)
    )?;
    Ok(Transferred { a_to_b, b_to_a })
}

/// Copies until EOF, then shuts the writer down. Returns the bytes copied.
pub async fn copy_one_way<R, W>(r: &mut R, w: &mut W) -> io::Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; INITIAL_BUF];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            w.shutdown().await?;
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        total += n as u64;
        let want = if total >= 10 * 1024 * 1024 {
            LARGE_BUF
        } else if total >= 128 * 1024 {
            MEDIUM_BUF
        } else {
            INITIAL_BUF
        };
        if buf.len() < want {
            buf.resize(want, 0);
        }
    }
}
