//! The one renderer of client-facing errors: the OpenAI error object
//! `{"error":{"message","type","param","code"}}`, as a JSON body or as a terminal SSE event,
//! plus the JSON string escaper the rest of the crate shares. It never decides statuses or
//! error types (the caller's error family does) and never allocates beyond the output buffer.

use bytes::{BufMut, BytesMut};

/// An OpenAI-style error, rendered as `{"error":{"message":..,"type":..,"param":..,"code":..}}`
/// with `param` and `code` written as `null` when `None`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorBody<'a> {
    /// Human-readable explanation shown to the client.
    pub message: &'a str,
    /// The OpenAI error type, e.g. `invalid_request_error`, `rate_limit_error`, `server_error`.
    pub error_type: &'a str,
    /// The request parameter at fault, e.g. `model`.
    pub param: Option<&'a str>,
    /// A machine-readable code, e.g. `rate_limit_exceeded`.
    pub code: Option<&'a str>,
}

// === impl ErrorBody ===

impl ErrorBody<'_> {
    /// Appends the error as a JSON document (no trailing newline) to `out`.
    pub fn write_json(&self, out: &mut BytesMut) {
        // Reserve once for the fixed skeleton plus the unescaped lengths; escaping may still grow
        // the buffer, but the common case (plain ASCII messages) fits in this one reservation.
        out.reserve(
            64 + self.message.len()
                + self.error_type.len()
                + self.param.map_or(0, str::len)
                + self.code.map_or(0, str::len),
        );
        out.put_slice(b"{\"error\":{\"message\":");
        write_json_string(out, self.message);
        out.put_slice(b",\"type\":");
        write_json_string(out, self.error_type);
        out.put_slice(b",\"param\":");
        write_optional(out, self.param);
        out.put_slice(b",\"code\":");
        write_optional(out, self.code);
        out.put_slice(b"}}");
    }

    /// Appends the error as one terminal SSE event, `data: {json}\n\n`, the way OpenAI reports
    /// errors in the middle of a stream. The JSON never contains a raw line break (they are
    /// escaped), so a single `data:` line is always enough.
    pub fn write_sse(&self, out: &mut BytesMut) {
        out.put_slice(b"data: ");
        self.write_json(out);
        out.put_slice(b"\n\n");
    }
}

fn write_optional(out: &mut BytesMut, value: Option<&str>) {
    match value {
        Some(v) => write_json_string(out, v),
        None => out.put_slice(b"null"),
    }
}

/// Appends `s` as a JSON string literal (with the surrounding quotes) to `out`, escaping `"`,
/// `\` and control characters. Everything else, including non-ASCII, is copied as UTF-8, which
/// JSON allows and which keeps the common case a single `memcpy` per run.
pub fn write_json_string(out: &mut BytesMut, s: &str) {
    out.reserve(s.len() + 2);
    out.put_u8(b'"');
    crate::json_text::escape_into(s, out);
    out.put_u8(b'"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json(e: &ErrorBody<'_>) -> serde_json::Value {
        let mut out = BytesMut::new();
        e.write_json(&mut out);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn renders_openai_shape_with_nulls() {
        let e = ErrorBody {
            message: "bad",
            error_type: "invalid_request_error",
            param: None,
            code: None,
        };
        let mut out = BytesMut::new();
        e.write_json(&mut out);
        assert_eq!(
            &out[..],
            br#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#
        );
    }

    #[test]
    fn renders_param_and_code() {
        let e = ErrorBody {
            message: "Rate limit reached",
            error_type: "rate_limit_error",
            param: Some("model"),
            code: Some("rate_limit_exceeded"),
        };
        let v = json(&e);
        assert_eq!(v["error"]["message"], "Rate limit reached");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["param"], "model");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn escapes_quotes_backslashes_controls_and_keeps_unicode() {
        let msg = "say \"hi\" \\ path C:\\x\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f} é 日本 🦀 \u{2028}";
        let e = ErrorBody {
            message: msg,
            error_type: "t\"ype",
            param: Some("p\\"),
            code: Some("c\n"),
        };
        let v = json(&e);
        assert_eq!(v["error"]["message"], msg);
        assert_eq!(v["error"]["type"], "t\"ype");
        assert_eq!(v["error"]["param"], "p\\");
        assert_eq!(v["error"]["code"], "c\n");
    }

    #[test]
    fn short_escapes_are_used() {
        let mut out = BytesMut::new();
        write_json_string(&mut out, "a\nb\u{1}\"");
        assert_eq!(&out[..], br#""a\nb\u0001\"""#);
    }

    #[test]
    fn sse_form_is_one_data_line_and_blank_line() {
        let e = ErrorBody {
            message: "line1\nline2",
            error_type: "server_error",
            param: None,
            code: Some("upstream_error"),
        };
        let mut out = BytesMut::new();
        e.write_sse(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("data: {\"error\":"));
        assert!(text.ends_with("}\n\n"));
        assert_eq!(text.matches('\n').count(), 2);
        let v: serde_json::Value =
            serde_json::from_str(&text["data: ".len()..text.len() - 2]).unwrap();
        assert_eq!(v["error"]["message"], "line1\nline2");
    }

    proptest! {
        #[test]
        fn any_string_round_trips_through_serde_json(s in any::<String>()) {
            let mut out = BytesMut::new();
            write_json_string(&mut out, &s);
            let back: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
