//! The gateway's one error type. Every failure a request can meet is a `GatewayError`; it knows
//! its HTTP status, its OpenAI error `type` and `code`, the field at fault, whether a retry is
//! safe, and a bounded metric label. It is rendered by one serializer (`error_body`), either as
//! a JSON body or as a terminal SSE event.

use std::time::Duration;

use bytes::BytesMut;
use tollgate_protocol::error_body::ErrorBody;
use tollgate_protocol::http::HttpError;
use tollgate_protocol::openai::RequestError;

/// Which upstream phase ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// TCP (and TLS) connection set-up.
    Connect,
    /// Request written, waiting for the response head.
    FirstByte,
    /// Waiting between two reads of the response body or stream.
    Idle,
}

impl TimeoutPhase {
    fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::FirstByte => "first byte",
            TimeoutPhase::Idle => "idle",
        }
    }
}

/// Everything that can end a request with an error.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The client's request violated HTTP/1.1 framing or a limit.
    #[error("{0}")]
    Http(#[from] HttpError),
    /// The client took too long to send its head or body.
    #[error("request not received within {0:?}")]
    ClientTimeout(Duration),
    /// No key, or a key the gateway does not know.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The body is not a valid request for the endpoint.
    #[error("{0}")]
    InvalidRequest(#[from] RequestError),
    /// The requested model is not configured.
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    /// No route for the path.
    #[error("Unknown request URL: {method} {path}")]
    NotFound {
        /// Request method.
        method: String,
        /// Request path (without query).
        path: String,
    },
    /// The path exists but not for this method.
    #[error("Method {method} is not allowed for {path}; use {allow}")]
    MethodNotAllowed {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// The allowed method.
        allow: &'static str,
    },
    /// The gateway is shutting down and takes no new requests.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The upstream could not be reached.
    #[error("upstream `{provider}` unreachable: {reason}")]
    UpstreamConnect {
        /// Provider name from config.
        provider: String,
        /// Why (refused, DNS, TLS...), free of secrets.
        reason: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream `{provider}` timed out ({} timeout, {after:?})", phase.as_str())]
    UpstreamTimeout {
        /// Provider name from config.
        provider: String,
        /// Which phase timed out.
        phase: TimeoutPhase,
        /// The configured limit.
        after: Duration,
    },
    /// The upstream closed or reset the connection before the response was complete.
    #[error("upstream `{provider}` closed the connection {when}")]
    UpstreamClosed {
        /// Provider name from config.
        provider: String,
        /// "before responding", "mid-body", "mid-stream".
        when: &'static str,
    },
    /// The upstream answered with an error status and a body that is not an OpenAI-style JSON
    /// error, so it cannot be passed through as is.
    #[error("upstream `{provider}` answered with status {status}")]
    UpstreamStatus {
        /// Provider name from config.
        provider: String,
        /// The upstream's status.
        status: u16,
    },
    /// The upstream reported an error inside its stream (after a 200).
    #[error("upstream `{provider}` reported an error mid-stream: {message}")]
    UpstreamStreamError {
        /// Provider name from config.
        provider: String,
        /// The status the error corresponds to.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The client went away while we were answering; nothing more can be sent.
    #[error("client closed the connection")]
    ClientGone,
    /// The upstream sent something that is not valid HTTP or SSE.
    #[error("upstream `{provider}` sent an invalid response: {reason}")]
    UpstreamProtocol {
        /// Provider name from config.
        provider: String,
        /// What was wrong.
        reason: String,
    },
    /// The key exists but may not be used (revoked, expired, rotated away).
    #[error("{message}")]
    KeyInactive {
        /// Client-facing explanation.
        message: &'static str,
        /// `key_revoked`, `key_expired`, `key_rotated`.
        code: &'static str,
    },
    /// The key may not do this (a model outside its allow-list, an unpriced model).
    #[error("{message}")]
    Forbidden {
        /// Client-facing explanation.
        message: String,
        /// Machine-readable code.
        code: &'static str,
        /// The field at fault.
        param: Option<&'static str>,
    },
    /// A rate limit or budget refused the request before any upstream call.
    #[error("{}", .0.message)]
    Limited(Box<LimitRefusal>),
    /// A guardrail `block` rule matched the request, or the response (which is then not
    /// delivered).
    #[error("The {what} was blocked by the content policy (guardrail rule `{rule}`).")]
    ContentPolicy {
        /// The rule's id: the operator's name for it, never the matched text.
        rule: String,
        /// `request` or `response`.
        what: &'static str,
    },
    /// The admin API was called without a valid master key, or with a bad request.
    #[error("{message}")]
    Admin {
        /// HTTP status.
        status: u16,
        /// Client-facing explanation.
        message: String,
        /// Machine-readable code.
        code: &'static str,
        /// The field at fault.
        param: Option<String>,
    },
}

/// A 429 from governance: the body and the `x-ratelimit-*` / `retry-after` headers naming the
/// limit that refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRefusal {
    /// Client-facing explanation naming the scope and limit.
    pub message: String,
    /// OpenAI error type: `requests`, `tokens`, `parallel_requests` or `insufficient_quota`.
    pub error_type: &'static str,
    /// `rate_limit_exceeded` or `budget_exceeded`.
    pub code: &'static str,
    /// Response headers.
    pub headers: Vec<(&'static str, String)>,
}

// === impl GatewayError ===

impl GatewayError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::Http(e) => e.status(),
            GatewayError::ClientTimeout(_) => 408,
            GatewayError::Unauthorized(_) => 401,
            GatewayError::InvalidRequest(_) => 400,
            GatewayError::ModelNotFound(_) | GatewayError::NotFound { .. } => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::ShuttingDown => 503,
            GatewayError::UpstreamTimeout { .. } => 504,
            GatewayError::UpstreamStatus { status, .. } => *status,
            GatewayError::UpstreamStreamError { status, .. } => *status,
            // nginx's convention for "client closed request"; only ever logged.
            GatewayError::ClientGone => 499,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamClosed { .. }
            | GatewayError::UpstreamProtocol { .. } => 502,
            GatewayError::KeyInactive { .. } => 401,
            GatewayError::Forbidden { .. } => 403,
            GatewayError::Limited(_) => 429,
            GatewayError::ContentPolicy { .. } => 400,
            GatewayError::Admin { status, .. } => *status,
        }
    }

    /// The OpenAI error `type`.
    pub fn error_type(&self) -> &'static str {
        if let GatewayError::Limited(refusal) = self {
            return refusal.error_type;
        }
        match self.status() {
            403 => "permission_error",
            401 => "invalid_request_error",
            429 => "rate_limit_error",
            500.. => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The OpenAI error `code`, when there is a well-known one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            GatewayError::Unauthorized(_) => Some("invalid_api_key"),
            GatewayError::ModelNotFound(_) => Some("model_not_found"),
            GatewayError::InvalidRequest(e) => e.code,
            GatewayError::UpstreamTimeout { .. } => Some("upstream_timeout"),
            GatewayError::UpstreamConnect { .. } => Some("upstream_unreachable"),
            GatewayError::UpstreamClosed { .. } => Some("upstream_closed"),
            GatewayError::UpstreamProtocol { .. } => Some("upstream_invalid_response"),
            GatewayError::UpstreamStatus { .. } => Some("upstream_error"),
            GatewayError::UpstreamStreamError { .. } => Some("upstream_stream_error"),
            GatewayError::ClientGone => None,
            GatewayError::ShuttingDown => Some("shutting_down"),
            GatewayError::Http(_) => Some("bad_http_request"),
            GatewayError::ClientTimeout(_) => Some("request_timeout"),
            GatewayError::NotFound { .. } => Some("unknown_url"),
            GatewayError::MethodNotAllowed { .. } => Some("method_not_allowed"),
            GatewayError::KeyInactive { code, .. } => Some(code),
            GatewayError::Forbidden { code, .. } => Some(code),
            GatewayError::Limited(refusal) => Some(refusal.code),
            GatewayError::ContentPolicy { .. } => Some("content_policy_violation"),
            GatewayError::Admin { code, .. } => Some(code),
        }
    }

    /// The request field at fault, if one is.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            GatewayError::InvalidRequest(e) => e.param,
            GatewayError::ModelNotFound(_) => Some("model"),
            GatewayError::Forbidden { param, .. } => *param,
            _ => None,
        }
    }

    /// True when trying the same request again (here or on another deployment) is safe and
    /// may succeed: nothing reached the model, or the upstream failed transiently.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamConnect { .. }
                | GatewayError::UpstreamTimeout {
                    phase: TimeoutPhase::Connect,
                    ..
                }
        )
    }

    /// True for a guardrail refusal: the upstream did its job, the policy refused the text.
    pub fn is_content_policy(&self) -> bool {
        matches!(self, GatewayError::ContentPolicy { .. })
    }

    /// True when the client connection must be closed after answering (framing is lost).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::Http(_)
                | GatewayError::ClientTimeout(_)
                | GatewayError::ShuttingDown
                | GatewayError::ClientGone
        )
    }

    /// A bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::Http(_) => "bad_http",
            GatewayError::ClientTimeout(_) => "client_timeout",
            GatewayError::Unauthorized(_) => "unauthorized",
            GatewayError::InvalidRequest(_) => "invalid_request",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::NotFound { .. } => "not_found",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::ShuttingDown => "shutting_down",
            GatewayError::UpstreamConnect { .. } => "upstream_connect",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UpstreamClosed { .. } => "upstream_closed",
            GatewayError::UpstreamProtocol { .. } => "upstream_protocol",
            GatewayError::UpstreamStatus { .. } => "upstream_status",
            GatewayError::UpstreamStreamError { .. } => "upstream_stream_error",
            GatewayError::ClientGone => "client_gone",
            GatewayError::KeyInactive { .. } => "key_inactive",
            GatewayError::Forbidden { .. } => "forbidden",
            GatewayError::Limited(r) if r.code == "budget_exceeded" => "budget_exceeded",
            GatewayError::Limited(_) => "rate_limited",
            GatewayError::ContentPolicy { .. } => "content_policy",
            GatewayError::Admin { .. } => "admin",
        }
    }

    fn with_body<R>(&self, f: impl FnOnce(&ErrorBody<'_>) -> R) -> R {
        let message = self.to_string();
        let param = match self {
            GatewayError::Admin { param, .. } => param.as_deref(),
            _ => self.param(),
        };
        f(&ErrorBody {
            message: &message,
            error_type: self.error_type(),
            param,
            code: self.code(),
        })
    }

    /// Headers that go with this error's response (`allow`, `retry-after`, `x-ratelimit-*`).
    pub fn headers(&self) -> Vec<(&'static str, Vec<u8>)> {
        match self {
            GatewayError::MethodNotAllowed { allow, .. } => {
                vec![("allow", allow.as_bytes().to_vec())]
            }
            GatewayError::Limited(refusal) => refusal
                .headers
                .iter()
                .map(|(name, value)| (*name, value.as_bytes().to_vec()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Append the OpenAI-style JSON body.
    pub fn write_json(&self, out: &mut BytesMut) {
        self.with_body(|body| body.write_json(out));
    }

    /// Append a terminal SSE error event (for a stream that has already started).
    pub fn write_sse(&self, out: &mut BytesMut) {
        self.with_body(|body| body.write_sse(out));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let e = GatewayError::ModelNotFound("gpt-9".into());
        assert_eq!(
            (e.status(), e.code(), e.param()),
            (404, Some("model_not_found"), Some("model"))
        );
        let e = GatewayError::UpstreamTimeout {
            provider: "p".into(),
            phase: TimeoutPhase::FirstByte,
            after: Duration::from_secs(1),
        };
        assert_eq!((e.status(), e.error_type()), (504, "api_error"));
        assert!(!e.is_retryable());
        assert_eq!(GatewayError::Http(HttpError::BodyTooLarge).status(), 413);
    }

    #[test]
    fn renders_openai_error_json() {
        let mut out = BytesMut::new();
        GatewayError::Unauthorized("Missing API key").write_json(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains(r#""code":"invalid_api_key""#), "{text}");
        assert!(text.contains(r#""message":"Missing API key""#), "{text}");
    }
}
