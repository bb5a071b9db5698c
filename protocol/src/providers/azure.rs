//! Azure OpenAI: the OpenAI Chat Completions wire format at a per-deployment address
//! (`/openai/deployments/{deployment}/chat/completions?api-version=...`), authenticated with an
//! `api-key` header. Everything but addressing and Azure's content-filter errors is delegated to
//! [`OpenAiCompatAdapter`]; this module must not grow a second copy of that logic.

use super::openai_compat::{AuthStyle, OpenAiCompatAdapter};
use super::{Adapter, ProviderError, StreamDecoder, Target, TranslateError, UpstreamRequest};
use crate::chat::{ChatRequest, ChatResponse};

/// `api-version` used when the deployment does not name one: the data-plane inference GA
/// release listed in Azure OpenAI's REST API reference ("API specs" table). It is also the
/// first GA version whose spec takes `stream_options`, which streams always send (to settle
/// usage); older versions answer such requests with a 400, so configure this or newer.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// Header carrying the Azure OpenAI resource key.
pub const API_KEY_HEADER: &str = "api-key";

/// Adapter for Azure OpenAI deployments. `Target::model` is the deployment name and
/// `Target::api_version` the `api-version` query value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AzureAdapter {
    inner: OpenAiCompatAdapter,
}

// === impl AzureAdapter ===

impl AzureAdapter {
    /// An adapter sending the key in `api-key`.
    pub const fn new() -> Self {
        AzureAdapter {
            inner: OpenAiCompatAdapter::new(AuthStyle::Header(API_KEY_HEADER)),
        }
    }

    /// Path and query for a deployment: `{base_path}/openai/deployments/{deployment}/chat/
    /// completions?api-version={version}`. The deployment name is percent-encoded so it can
    /// never add path segments or a query of its own.
    pub fn path(target: &Target<'_>) -> String {
        let version = target
            .api_version
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_API_VERSION);
        format!(
            "{}/openai/deployments/{}/chat/completions?api-version={}",
            target.base_path,
            encode_segment(target.model),
            encode_segment(version)
        )
    }
}

impl Default for AzureAdapter {
    fn default() -> Self {
        Self::new()
    }
}

impl Adapter for AzureAdapter {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, TranslateError> {
        if target.model.is_empty() {
            return Err(TranslateError::new(
                "the Azure deployment name is empty",
                Some("model"),
            ));
        }
        self.inner.encode_at(req, target, Self::path(target))
    }

    /// Azure's body is OpenAI's plus `prompt_filter_results` / `content_filter_results`, which
    /// are ignored; `finish_reason: "content_filter"` passes through as `ContentFilter`.
    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, ProviderError> {
        self.inner.decode_response(body, model)
    }

    /// Azure streams start with a chunk carrying only `prompt_filter_results` (no choices);
    /// the shared decoder drops it.
    fn stream_decoder(&self, model: &str) -> Box<dyn StreamDecoder> {
        self.inner.stream_decoder(model)
    }

    /// A prompt blocked by Azure's content filter is a 400 with `code: "content_filter"` (and
    /// `innererror.code: "ResponsibleAIPolicyViolation"`): the shared classification knows
    /// those codes, so it maps to `ContentFilter`, not `InvalidRequest`, and the client learns
    /// why. Azure's 429 message ("Please retry after N seconds") fills `retry_after`.
    fn map_error(&self, status: u16, body: &[u8]) -> ProviderError {
        self.inner.map_error(status, body)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::chat::{Message, Role};
    use crate::providers::ErrorKind;

    fn target<'a>(model: &'a str, version: Option<&'a str>) -> Target<'a> {
        Target {
            authority: "res.openai.azure.com",
            base_path: "",
            model,
            api_key: Some("azkey"),
            api_version: version,
            aws: None,
            now_unix: 0,
        }
    }

    #[test]
    fn addresses_the_deployment_with_api_key() {
        let req = ChatRequest {
            model: "gpt-4o".into(),
            messages: vec![Message::text(Role::User, "hi")],
            ..ChatRequest::default()
        };
        let a = AzureAdapter::new();
        let up = a.encode_request(&req, &target("gpt-4o", None)).unwrap();
        assert_eq!(
            up.path,
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert!(up.headers.contains(&("api-key", "azkey".into())));
        assert!(up.headers.iter().all(|(n, _)| *n != "authorization"));
        let up = a
            .encode_request(&req, &target("my dep/x?y", Some("2025-01-01-preview")))
            .unwrap();
        assert_eq!(
            up.path,
            "/openai/deployments/my%20dep%2Fx%3Fy/chat/completions?api-version=2025-01-01-preview"
        );
        assert!(a.encode_request(&req, &target("", None)).is_err());
    }

    #[test]
    fn content_filter_400() {
        let body = br#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"}}}}}"#;
        let e = AzureAdapter::new().map_error(400, body);
        assert_eq!(e.kind, ErrorKind::ContentFilter);
        assert_eq!(e.status, 400);
        assert!(!e.is_retryable());
        let e = AzureAdapter::new().map_error(
            429,
            br#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation have exceeded token rate limit of your current pricing tier. Please retry after 6 seconds."}}"#,
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(6));
    }
}
