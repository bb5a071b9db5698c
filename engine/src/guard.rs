//! Guardrails on the request path: which profile a request runs under, its request body
//! scanned before any upstream call (a `block` rule answers 400, masked values are spliced
//! in), response bodies scanned before they are sent, and the hits that go into the usage
//! record. The scanning itself is `tollgate_policy::guardrails`; this module finds the text in
//! JSON bodies: every string, keys included, except values the model never reads as text
//! (ids, enums, URLs, base64 payloads).

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Arc;

use tollgate_policy::governance::KeyEntry;
use tollgate_policy::guardrails::{Profile, Session, Side};
use tollgate_protocol::json_text::{escape_into, for_each_string, splice, unescape_into};

use crate::error::GatewayError;
use crate::shared::Shared;
use crate::store::record::GuardHit;
use crate::worker::Core;

/// Values under these keys are identifiers, enums, URLs or binary payloads, not text a model
/// reads. Skipping them saves time and, for base64 (`data`, image `url`s), keeps a digit run
/// that happens to look like a phone number from being rewritten.
const NOT_TEXT: &[&[u8]] = &[
    b"model",
    b"role",
    b"type",
    b"id",
    b"object",
    b"tool_call_id",
    b"tool_use_id",
    b"url",
    b"data",
    b"media_type",
    b"detail",
    b"format",
    b"encoding_format",
    b"finish_reason",
    b"stop_reason",
    b"system_fingerprint",
    b"service_tier",
    b"signature",
    b"user",
];

/// Why a body was not passed on.
enum Unscanned {
    /// A `block` rule matched.
    Blocked(GatewayError),
    /// Not JSON: nothing could be scanned.
    NotJson(String),
}

/// One request's guardrails: the profile it runs under and what the scans found.
#[derive(Debug)]
pub(crate) struct Guard {
    profile: Arc<Profile>,
    session: RefCell<Session>,
}

impl Guard {
    /// The guard for a request made with `entry`: the profile the key (or its user, team or
    /// org) names, else the default profile; `None` when there is neither, or the profile has
    /// no rules.
    pub(crate) fn for_key(shared: &Shared, entry: &KeyEntry) -> Option<Guard> {
        let guardrails = &shared.guardrails;
        let profile = match entry.guardrails.as_deref() {
            Some(name) => guardrails.profile(name),
            None => guardrails.default_profile(),
        }?;
        if profile.is_idle(Side::Input) && profile.is_idle(Side::Output) {
            return None;
        }
        Some(Guard {
            profile: profile.clone(),
            session: RefCell::new(Session::new()),
        })
    }

    /// Scans a request body before any upstream call. `Ok(None)`: send it as it is.
    /// `Ok(Some(body))`: send this instead (masked values replaced by placeholders). A
    /// `block` rule gives 400 `content_policy_violation`; a body that is not JSON cannot be
    /// scanned and is refused.
    pub(crate) fn scan_request(
        &self,
        core: &Core,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        self.scan(core, Side::Input, body).map_err(|e| match e {
            Unscanned::Blocked(e) => e,
            Unscanned::NotJson(why) => {
                GatewayError::InvalidRequest(tollgate_protocol::openai::RequestError {
                    message: format!("The request body is not valid JSON: {why}"),
                    param: None,
                    code: None,
                })
            }
        })
    }

    /// Scans a complete (non-streamed) response body from `provider` before it is sent: the
    /// same answers as [`Guard::scan_request`], masking or restoring placeholders; a body that
    /// is not JSON is an upstream protocol error rather than text let through unscanned.
    pub(crate) fn scan_response(
        &self,
        core: &Core,
        provider: &str,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        self.scan(core, Side::Output, body).map_err(|e| match e {
            Unscanned::Blocked(e) => e,
            Unscanned::NotJson(why) => GatewayError::UpstreamProtocol {
                provider: provider.to_owned(),
                reason: format!("the response body could not be scanned: {why}"),
            },
        })
    }

    fn scan(&self, core: &Core, side: Side, body: &[u8]) -> Result<Option<Vec<u8>>, Unscanned> {
        if self.profile.is_idle(side) {
            return Ok(None);
        }
        let mut scratch = core.guard_scratch.borrow_mut();
        let mut session = self.session.borrow_mut();
        let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
        let mut blocked = None;
        let mut text = String::new();
        let walked = for_each_string(body, |s| {
            if blocked.is_some() || (!s.is_key && s.key.is_some_and(|k| NOT_TEXT.contains(&k))) {
                return;
            }
            let t = if s.escaped {
                text.clear();
                // The walker only reports strings that decode.
                if unescape_into(s.raw, &mut text).is_err() {
                    return;
                }
                text.as_str()
            } else {
                match std::str::from_utf8(s.raw) {
                    Ok(t) => t,
                    Err(_) => return,
                }
            };
            match self.profile.scan_text(side, t, &mut session, &mut scratch) {
                Ok(None) => {}
                Ok(Some(rewritten)) => {
                    let mut escaped = Vec::with_capacity(rewritten.len() + 8);
                    escape_into(&rewritten, &mut escaped);
                    edits.push((s.span.clone(), escaped));
                }
                Err(b) => blocked = Some(b),
            }
        });
        if let Some(b) = blocked {
            return Err(Unscanned::Blocked(GatewayError::ContentPolicy {
                rule: self.profile.rules()[b.rule].id.clone(),
                what: match side {
                    Side::Input => "request",
                    Side::Output => "response",
                },
            }));
        }
        walked.map_err(|e| Unscanned::NotJson(e.to_string()))?;
        Ok((!edits.is_empty()).then(|| splice(body, &edits)))
    }

    /// The rules that fired, for the usage record.
    pub(crate) fn hits(&self) -> Vec<GuardHit> {
        let session = self.session.borrow();
        session
            .hits()
            .iter()
            .map(|h| {
                let rule = &self.profile.rules()[h.rule];
                GuardHit {
                    rule: rule.id.clone(),
                    action: rule.action.as_str(),
                    side: h.side.as_str(),
                    count: h.count,
                }
            })
            .collect()
    }
}
