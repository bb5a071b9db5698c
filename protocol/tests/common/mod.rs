//! Helpers shared by the vendor test binaries (`anthropic`, `gemini`, `bedrock`). Each binary
//! compiles this module on its own, so everything here must be used by all of them.

use tollgate_protocol::mock::{MockPlan, MockStep};

/// Every body byte of `plan`, in order (what a client reads when nothing is cut short).
pub fn plan_body(plan: &MockPlan) -> Vec<u8> {
    let mut out = Vec::new();
    for step in &plan.steps {
        if let MockStep::Body { bytes, .. } = step {
            out.extend_from_slice(bytes);
        }
    }
    out
}
