//! Small owned-buffer I/O helpers over monoio's rent-style traits. Reads append to a
//! `BytesMut` so parsers can split frames off its front without copying.

use std::io;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

/// Free space guaranteed before each read.
const MIN_READ_SPACE: usize = 4096;

/// Read once, appending to `buf`. Returns the number of bytes read (0 at EOF).
///
/// The buffer is moved into the kernel operation and back; if this future is dropped mid-read
/// (a timeout), `buf` is left empty, which is fine because callers close the connection then.
pub async fn read_some<S: AsyncReadRent>(stream: &mut S, buf: &mut BytesMut) -> io::Result<usize> {
    let mut owned = std::mem::take(buf);
    if owned.capacity() - owned.len() < MIN_READ_SPACE {
        owned.reserve(MIN_READ_SPACE);
    }
    let len = owned.len();
    let cap = owned.capacity();
    let (res, slice) = stream.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    res
}

/// Write all of `out` and clear it, keeping its allocation for reuse.
pub async fn write_all_buf<S: AsyncWriteRent>(
    stream: &mut S,
    out: &mut BytesMut,
) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let owned = std::mem::take(out);
    let (res, mut owned) = stream.write_all(owned).await;
    owned.clear();
    *out = owned;
    res.map(|_| ())
}
