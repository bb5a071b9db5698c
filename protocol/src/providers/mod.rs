//! Provider adapters: pure conversion between the canonical chat model (`crate::chat`) and each
//! vendor's wire format, separate from I/O. Every adapter module has the same anatomy:
//! constants, the adapter struct, the `Adapter` impl, private wire types, conversions, error
//! mapping, and fixture tests written from the vendor's published API reference.
//!
//! The engine owns sockets, TLS, pools and timing; an adapter only says what to send (method,
//! path, headers, body) and how to read what comes back (a whole body, a stream of bytes, or an
//! error status). Nothing here performs I/O; signing takes the time as an argument.

pub mod anthropic;
pub mod anthropic_mock;
pub mod azure;
pub mod bedrock;
pub mod bedrock_mock;
pub mod eventstream;
pub mod gemini;
pub mod gemini_mock;
pub mod openai_compat;
pub mod presets;
pub mod sigv4;

use bytes::Bytes;

use crate::chat::{ChatChunk, ChatRequest, ChatResponse};

/// Everything an adapter needs to address one deployment.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Host (and `:port` when not the default) for the `host` header and signing.
    pub authority: &'a str,
    /// Path prefix of the provider's base URL, without a trailing slash ("" or e.g. "/v1").
    pub base_path: &'a str,
    /// The provider's model (or Azure deployment) id for this deployment.
    pub model: &'a str,
    /// API key, when the provider uses one.
    pub api_key: Option<&'a str>,
    /// Provider-specific API version (Azure `api-version`, Anthropic `anthropic-version`).
    pub api_version: Option<&'a str>,
    /// AWS signing parameters (Bedrock).
    pub aws: Option<AwsSigning<'a>>,
    /// Request time as Unix seconds (AWS SigV4 signs it).
    pub now_unix: u64,
}

/// AWS credentials and region for SigV4.
#[derive(Clone)]
pub struct AwsSigning<'a> {
    /// e.g. `us-east-1`.
    pub region: &'a str,
    /// Access key id.
    pub access_key_id: &'a str,
    /// Secret access key.
    pub secret_access_key: &'a str,
    /// Session token for temporary credentials.
    pub session_token: Option<&'a str>,
}

impl std::fmt::Debug for AwsSigning<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSigning")
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A request ready to be written by the engine (it adds `content-length` and `connection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// HTTP method (always POST today).
    pub method: &'static str,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Headers to send, including `host` and authentication.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
}

/// What went wrong, in provider-independent terms, so the router can decide to retry or fall
/// back and the client gets one consistent OpenAI-style error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400-type: the request itself is wrong; retrying elsewhere will not help.
    InvalidRequest,
    /// The prompt is longer than the model's context window (a separate fallback chain).
    ContextLength,
    /// Upstream credentials rejected (401/403): a gateway configuration problem.
    Authentication,
    /// The model id does not exist upstream.
    NotFound,
    /// 429: rate limited or out of quota.
    RateLimited,
    /// 5xx, 529 (Anthropic overloaded), throttling the provider signals as retryable.
    Unavailable,
    /// Blocked by the provider's safety filter.
    ContentFilter,
    /// The upstream answered with something the adapter cannot read.
    BadResponse,
}

/// An error reported by (or about) an upstream provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// Classification.
    pub kind: ErrorKind,
    /// Status to answer the client with (the upstream's, or 502 for unreadable responses).
    pub status: u16,
    /// Human-readable message, free of secrets.
    pub message: String,
    /// Seconds the provider asked us to wait, if it said.
    pub retry_after: Option<u64>,
}

impl ProviderError {
    /// Create an error.
    pub fn new(kind: ErrorKind, status: u16, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// An upstream response the adapter could not parse.
    pub fn bad_response(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadResponse, 502, message)
    }

    /// True when the same request may succeed on a retry or another deployment.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::RateLimited | ErrorKind::Unavailable)
    }

    /// The OpenAI error `type` this maps to.
    pub fn openai_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidRequest | ErrorKind::ContextLength | ErrorKind::NotFound => {
                "invalid_request_error"
            }
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::ContentFilter => "invalid_request_error",
            ErrorKind::Unavailable | ErrorKind::BadResponse => "api_error",
        }
    }

    /// The OpenAI error `code` this maps to.
    pub fn openai_code(&self) -> Option<&'static str> {
        match self.kind {
            ErrorKind::ContextLength => Some("context_length_exceeded"),
            ErrorKind::RateLimited => Some("rate_limit_exceeded"),
            ErrorKind::ContentFilter => Some("content_filter"),
            ErrorKind::NotFound => Some("model_not_found"),
            ErrorKind::Unavailable => Some("upstream_unavailable"),
            ErrorKind::BadResponse => Some("upstream_invalid_response"),
            ErrorKind::Authentication => Some("upstream_authentication"),
            ErrorKind::InvalidRequest => None,
        }
    }
}

/// Why a request could not be translated for a provider (answered with 400 naming the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TranslateError {
    /// What cannot be expressed for this provider.
    pub message: String,
    /// The request field at fault.
    pub param: Option<String>,
}

impl TranslateError {
    /// Create a translation error about `param`.
    pub fn new(message: impl Into<String>, param: Option<&str>) -> Self {
        TranslateError {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }
}

/// Incremental decoder of a provider's streaming response body into canonical chunks.
pub trait StreamDecoder: Send {
    /// Feed the next bytes of the response body (any split); append the chunks they complete.
    /// A provider error delivered inside the stream comes back as `Err`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), ProviderError>;

    /// The body ended. Appends any final chunks (e.g. the usage chunk) and returns whether the
    /// stream was complete (its terminal event seen); an incomplete stream is a truncation.
    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<bool, ProviderError>;
}

/// One provider's translation, implemented once per vendor module.
pub trait Adapter: Send + Sync + std::fmt::Debug {
    /// Short vendor name for logs and metrics (`anthropic`, `gemini`...).
    fn name(&self) -> &'static str;

    /// Translate a canonical request for this provider. `req.model` is already the
    /// deployment's model id; `req.stream` says which kind of call to make.
    fn encode_request(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, TranslateError>;

    /// Read a successful (2xx) non-streaming response body.
    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, ProviderError>;

    /// A decoder for a successful streaming response body. `model` is echoed in the chunks.
    fn stream_decoder(&self, model: &str) -> Box<dyn StreamDecoder>;

    /// Map a non-2xx response (status and body) to a provider error.
    fn map_error(&self, status: u16, body: &[u8]) -> ProviderError;
}

/// Classify an HTTP status the way most providers mean it (adapters refine with the body).
pub fn kind_for_status(status: u16) -> ErrorKind {
    match status {
        400 | 405 | 409 | 413 | 415 | 422 => ErrorKind::InvalidRequest,
        401 | 403 => ErrorKind::Authentication,
        404 => ErrorKind::NotFound,
        408 | 429 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::BadResponse,
    }
}

/// True when an error message reads like a context-window overflow. Providers phrase it
/// differently and rarely give it a distinct code, so this is matched on the text.
pub fn looks_like_context_length(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "context length",
        "context_length",
        "context window",
        "maximum context",
        "too many tokens",
        "prompt is too long",
        "input is too long",
        "exceeds the maximum number of tokens",
        "input token count",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(kind_for_status(429), ErrorKind::RateLimited);
        assert_eq!(kind_for_status(529), ErrorKind::Unavailable);
        assert_eq!(kind_for_status(400), ErrorKind::InvalidRequest);
        assert!(ProviderError::new(kind_for_status(503), 503, "x").is_retryable());
        assert!(!ProviderError::new(kind_for_status(400), 400, "x").is_retryable());
    }

    #[test]
    fn context_length_phrases() {
        assert!(looks_like_context_length(
            "This model's maximum context length is 8192 tokens"
        ));
        assert!(looks_like_context_length(
            "prompt is too long: 210000 tokens > 200000 maximum"
        ));
        assert!(!looks_like_context_length("invalid api key"));
    }
}
