//! The built-in `kind = "mock"` provider: drives the sans-IO mock plan from
//! `tollgate_protocol::mock` with this core's timers, in-process, so the quick start needs no
//! network. Its responses go through exactly the same pipeline as a real upstream's, and it
//! honours the provider's first-byte and idle timeouts the same way.

use std::time::Duration;

use bytes::Bytes;
use tollgate_protocol::mock::MockStep;

use crate::error::{GatewayError, TimeoutPhase};
use crate::shared::ProviderTarget;
use crate::upstream::{UpstreamHead, UpstreamResponse};

/// The body half of a mock response: the remaining plan steps.
#[derive(Debug)]
pub struct MockResponse {
    steps: std::vec::IntoIter<MockStep>,
    provider: String,
    idle_timeout: Duration,
}

/// Run the plan up to and including its response head.
/// The plan is computed by the caller (synchronously, with the core's scratch buffer) so no
/// borrow of per-core state is held across this function's sleeps.
pub async fn call_mock(
    provider: &ProviderTarget,
    first_byte_timeout: Duration,
    steps: Vec<MockStep>,
) -> Result<UpstreamResponse, GatewayError> {
    let mut steps = steps.into_iter();
    let mut waited = Duration::ZERO;
    let timeout = |phase, after| GatewayError::UpstreamTimeout {
        provider: provider.name.clone(),
        phase,
        after,
    };
    loop {
        match steps.next() {
            Some(MockStep::Head {
                delay,
                status,
                content_type,
                ..
            }) => {
                waited += delay;
                if waited > first_byte_timeout {
                    sleep(first_byte_timeout.saturating_sub(waited - delay)).await;
                    return Err(timeout(TimeoutPhase::FirstByte, first_byte_timeout));
                }
                sleep(delay).await;
                let head = UpstreamHead {
                    status,
                    content_type: Some(Bytes::from_static(content_type.as_bytes())),
                    retry_after: None,
                };
                let body = MockResponse {
                    steps,
                    provider: provider.name.clone(),
                    idle_timeout: provider.idle_timeout,
                };
                return Ok(UpstreamResponse::mock(head, body));
            }
            Some(MockStep::Hang) => {
                sleep(first_byte_timeout.saturating_sub(waited)).await;
                return Err(timeout(TimeoutPhase::FirstByte, first_byte_timeout));
            }
            Some(MockStep::Reset) | Some(MockStep::End) | None => {
                return Err(GatewayError::UpstreamClosed {
                    provider: provider.name.clone(),
                    when: "before responding",
                })
            }
            // A plan never puts body bytes before its head; skip defensively.
            Some(MockStep::Body { .. }) => {}
        }
    }
}

// === impl MockResponse ===

impl MockResponse {
    /// The next body piece after its delay; `None` at the end of the plan.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, GatewayError> {
        match self.steps.next() {
            None | Some(MockStep::End) => Ok(None),
            Some(MockStep::Body { delay, bytes }) => {
                if delay > self.idle_timeout {
                    sleep(self.idle_timeout).await;
                    return Err(self.idle_expired());
                }
                sleep(delay).await;
                Ok(Some(bytes))
            }
            Some(MockStep::Hang) => {
                sleep(self.idle_timeout).await;
                Err(self.idle_expired())
            }
            Some(MockStep::Reset) | Some(MockStep::Head { .. }) => {
                Err(GatewayError::UpstreamClosed {
                    provider: self.provider.clone(),
                    when: "mid-body",
                })
            }
        }
    }

    fn idle_expired(&self) -> GatewayError {
        GatewayError::UpstreamTimeout {
            provider: self.provider.clone(),
            phase: TimeoutPhase::Idle,
            after: self.idle_timeout,
        }
    }
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        monoio::time::sleep(d).await;
    }
}
