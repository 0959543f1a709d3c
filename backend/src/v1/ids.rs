//! OpenAI-style ids over chatsync's own: `conv_` + a context's UUID, `msg_` + a message's,
//! `resp_` for responses. The prefix is checked on the way in, so an id of one kind never
//! names an object of another.

use uuid::Uuid;

pub const CONVERSATION: &str = "conv_";
pub const MESSAGE: &str = "msg_";
pub const RESPONSE: &str = "resp_";
/// A function call's item id: `fc_` + the call id.
pub const FUNCTION_CALL: &str = "fc_";
/// A tool result's item id: `fco_` + the tool message's UUID.
pub const FUNCTION_OUTPUT: &str = "fco_";
/// A server tool call that waits for approval: `mcpr_` + the call id.
pub const APPROVAL_REQUEST: &str = "mcpr_";
/// A server tool call that ran: `mcp_` + the call id.
pub const MCP_CALL: &str = "mcp_";

pub fn make(prefix: &str, id: Uuid) -> String {
    format!("{prefix}{}", id.simple())
}

/// The UUID behind `prefix` + 32 hex digits (or a hyphenated UUID); `None` otherwise.
pub fn parse(prefix: &str, id: &str) -> Option<Uuid> {
    Uuid::parse_str(id.strip_prefix(prefix)?).ok()
}

pub fn new_response_id() -> String {
    make(RESPONSE, Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ids_round_trip(n in any::<u128>()) {
            let id = Uuid::from_u128(n);
            prop_assert_eq!(parse(CONVERSATION, &make(CONVERSATION, id)), Some(id));
            prop_assert_eq!(parse(MESSAGE, &make(CONVERSATION, id)), None);
        }

        #[test]
        fn parsing_never_panics(s in ".*") {
            let _ = parse(CONVERSATION, &s);
        }
    }
}
