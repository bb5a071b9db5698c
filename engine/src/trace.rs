//! Request identity across hops: the `x-request-id` a request carries (the client's when it is
//! sane, else one the gateway makes), returned on every response and sent upstream, and the
//! W3C `traceparent` (with `tracestate`) passed to the upstream as a child of the client's
//! span. Pure: parsing and formatting only, no I/O.

use bytes::{BufMut, Bytes, BytesMut};

/// Longest client `x-request-id` accepted (longer ones are replaced, not truncated).
pub const MAX_REQUEST_ID: usize = 128;
/// Longest `tracestate` passed on (W3C allows 32 members of up to ~256 bytes; 512 covers real
/// use without letting a client inflate every upstream head).
const MAX_TRACESTATE: usize = 512;

/// A request id: visible ASCII, 1 to [`MAX_REQUEST_ID`] bytes, on the stack.
#[derive(Clone, Copy)]
pub struct RequestId {
    bytes: [u8; MAX_REQUEST_ID],
    len: u8,
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

impl RequestId {
    /// The client's id, if it is 1 to [`MAX_REQUEST_ID`] bytes of visible ASCII (no spaces or
    /// controls: it is echoed in headers and logs).
    pub fn from_client(value: &[u8]) -> Option<RequestId> {
        if value.is_empty()
            || value.len() > MAX_REQUEST_ID
            || !value.iter().all(|b| (0x21..=0x7e).contains(b))
        {
            return None;
        }
        let mut bytes = [0u8; MAX_REQUEST_ID];
        bytes[..value.len()].copy_from_slice(value);
        Some(RequestId {
            bytes,
            len: value.len() as u8,
        })
    }

    /// A gateway-made id: `req-<unix ms, hex>-<worker>-<sequence on that worker, hex>`, unique
    /// per process run.
    pub fn generate(now_ms: u64, worker: usize, seq: u64) -> RequestId {
        let mut bytes = [0u8; MAX_REQUEST_ID];
        let mut at = 0;
        let mut put = |piece: &[u8]| {
            let n = piece.len().min(MAX_REQUEST_ID - at);
            bytes[at..at + n].copy_from_slice(&piece[..n]);
            at += n;
        };
        let mut hex = [0u8; 16];
        put(b"req-");
        put(format_hex(now_ms, &mut hex));
        put(b"-");
        put(itoa::Buffer::new().format(worker).as_bytes());
        put(b"-");
        put(format_hex(seq, &mut hex));
        RequestId {
            bytes,
            len: at as u8,
        }
    }

    /// The id as text (always ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// `n` in lower-case hex without leading zeros, in `buf`; returns the digits.
fn format_hex(n: u64, buf: &mut [u8; 16]) -> &[u8] {
    let digits = b"0123456789abcdef";
    let mut at = buf.len();
    let mut rest = n;
    loop {
        at -= 1;
        buf[at] = digits[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    &buf[at..]
}

/// A valid W3C `traceparent` (version 00): trace id, parent span id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 32],
    flags: [u8; 2],
}

impl TraceParent {
    /// Parses `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` (lower-case hex; an
    /// all-zero trace or parent id is invalid). Later versions are read by their version-00
    /// prefix, as the spec asks. `None` for anything else: the header is then not passed on.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        let hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if value.len() < 55 {
            return None;
        }
        let (version, rest) = value.split_at(2);
        if !hex(version) || version == b"ff" {
            return None;
        }
        if version == b"00" && value.len() != 55 {
            return None;
        }
        if value.len() > 55 && value[55] != b'-' {
            return None;
        }
        let trace_id = &rest[1..33];
        let parent_id = &rest[34..50];
        let flags = &rest[51..53];
        if rest[0] != b'-' || rest[33] != b'-' || rest[50] != b'-' {
            return None;
        }
        if !hex(trace_id) || !hex(parent_id) || !hex(flags) {
            return None;
        }
        if trace_id.iter().all(|&b| b == b'0') || parent_id.iter().all(|&b| b == b'0') {
            return None;
        }
        let mut out = TraceParent {
            trace_id: [0; 32],
            flags: [0; 2],
        };
        out.trace_id.copy_from_slice(trace_id);
        out.flags.copy_from_slice(flags);
        Some(out)
    }

    /// The header for the next hop: same trace and flags, `span` as the parent id.
    pub fn child(&self, span: u64) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        out[3..35].copy_from_slice(&self.trace_id);
        out[35] = b'-';
        let digits = b"0123456789abcdef";
        // A span id must not be all zeros.
        let span = span.max(1);
        for i in 0..16 {
            out[36 + i] = digits[((span >> ((15 - i) * 4)) & 0xf) as usize];
        }
        out[52] = b'-';
        out[53..55].copy_from_slice(&self.flags);
        out
    }
}

/// The header lines (`name: value\r\n`) every upstream call of a request carries: its id, and
/// a child `traceparent` (with the client's `tracestate`) when the client sent a valid one.
pub fn upstream_lines(
    id: &RequestId,
    traceparent: Option<&[u8]>,
    tracestate: Option<&[u8]>,
    span: u64,
) -> Bytes {
    let mut out = BytesMut::with_capacity(160);
    out.put_slice(b"x-request-id: ");
    out.put_slice(id.as_bytes());
    out.put_slice(b"\r\n");
    if let Some(parent) = traceparent.and_then(TraceParent::parse) {
        out.put_slice(b"traceparent: ");
        out.put_slice(&parent.child(span));
        out.put_slice(b"\r\n");
        let state = tracestate.filter(|s| {
            !s.is_empty()
                && s.len() <= MAX_TRACESTATE
                && s.iter().all(|b| (0x20..=0x7e).contains(b))
        });
        if let Some(state) = state {
            out.put_slice(b"tracestate: ");
            out.put_slice(state);
            out.put_slice(b"\r\n");
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const PARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn client_ids_are_kept_when_sane_and_replaced_otherwise() {
        assert_eq!(
            RequestId::from_client(b"abc-123_X.y").unwrap().as_str(),
            "abc-123_X.y"
        );
        for bad in [
            &b""[..],
            b"has space",
            b"line\nbreak",
            b"\xc3\xa9",
            &[b'a'; MAX_REQUEST_ID + 1],
        ] {
            assert!(RequestId::from_client(bad).is_none(), "{bad:?}");
        }
        assert!(RequestId::from_client(&[b'a'; MAX_REQUEST_ID]).is_some());
        let made = RequestId::generate(0x18c_0000_0000, 3, 255);
        assert_eq!(made.as_str(), "req-18c00000000-3-ff");
        assert_eq!(RequestId::generate(0, 0, 0).as_str(), "req-0-0-0");
    }

    #[test]
    fn traceparent_parses_the_spec_examples_and_refuses_the_rest() {
        let tp = TraceParent::parse(PARENT).unwrap();
        assert_eq!(
            &tp.child(0xabc)[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"
        );
        // A later version with extra fields is read by its version-00 part.
        let mut future = b"01".to_vec();
        future.extend_from_slice(&PARENT[2..]);
        future.extend_from_slice(b"-extra");
        assert!(TraceParent::parse(&future).is_some());
        for bad in [
            &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"[..],
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"",
        ] {
            assert!(
                TraceParent::parse(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn upstream_lines_carry_the_id_and_a_child_span() {
        let id = RequestId::from_client(b"client-7").unwrap();
        let lines = upstream_lines(&id, Some(PARENT), Some(b"vendor=x"), 1);
        assert_eq!(
            &lines[..],
            &b"x-request-id: client-7\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000001-01\r\ntracestate: vendor=x\r\n"[..]
        );
        // No valid traceparent: neither it nor tracestate goes on.
        let lines = upstream_lines(&id, Some(b"junk"), Some(b"vendor=x"), 1);
        assert_eq!(&lines[..], &b"x-request-id: client-7\r\n"[..]);
    }
}
