//! Input parsed into domain types at the boundary: once a value has one of these types,
//! it is known to be valid.

use std::fmt;

/// Longest message content accepted, in characters (the body limit applies too).
pub const MAX_CONTENT_CHARS: usize = 100_000;
const MAX_KEY_CHARS: usize = 128;
const MAX_TITLE_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// Message text: not empty, not only white space, not over the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

impl MessageContent {
    pub fn parse(text: String) -> Result<Self, ParseError> {
        if text.trim().is_empty() {
            return Err(ParseError("content must not be empty or blank".into()));
        }
        let chars = text.chars().count();
        if chars > MAX_CONTENT_CHARS {
            return Err(ParseError(format!(
                "content has {chars} characters; at most {MAX_CONTENT_CHARS} are accepted"
            )));
        }
        Ok(MessageContent(text))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A client-chosen key (`client_message_id`, `Idempotency-Key`): 1 to 128 printable
/// characters, no white space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey(String);

impl ClientKey {
    pub fn parse(what: &str, key: String) -> Result<Self, ParseError> {
        let chars = key.chars().count();
        if chars == 0 || chars > MAX_KEY_CHARS {
            return Err(ParseError(format!(
                "{what} must have 1 to {MAX_KEY_CHARS} characters"
            )));
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ParseError(format!(
                "{what} must not contain white space or control characters"
            )));
        }
        Ok(ClientKey(key))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A user message as `send_message` received it, parsed: what the engine needs to add it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub content: MessageContent,
    pub client_message_id: Option<ClientKey>,
    pub idempotency_key: Option<ClientKey>,
    /// What to do when a turn is running.
    pub if_busy: chatsync_protocol::IfBusy,
}

impl NewMessage {
    /// A message without client keys.
    pub fn text(content: impl Into<String>) -> Result<Self, ParseError> {
        Ok(NewMessage {
            content: MessageContent::parse(content.into())?,
            client_message_id: None,
            idempotency_key: None,
            if_busy: chatsync_protocol::IfBusy::Enqueue,
        })
    }
}

/// A context title: trimmed, not blank, at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(title: &str) -> Result<Self, ParseError> {
        let title = title.trim();
        if title.is_empty() {
            return Err(ParseError(
                "title must not be blank (omit it for a default)".into(),
            ));
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(ParseError(format!(
                "title must have at most {MAX_TITLE_CHARS} characters"
            )));
        }
        Ok(Title(title.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn content_rejects_empty_and_blank() {
        for bad in ["", " ", "\n\t "] {
            assert!(MessageContent::parse(bad.into()).is_err(), "{bad:?}");
        }
        assert!(MessageContent::parse("x".repeat(MAX_CONTENT_CHARS + 1)).is_err());
        assert_eq!(
            MessageContent::parse("  hi ".into()).map(MessageContent::into_inner),
            Ok("  hi ".into()),
            "content is kept as sent"
        );
    }

    #[test]
    fn keys_are_bounded_and_printable() {
        assert!(ClientKey::parse("key", "".into()).is_err());
        assert!(ClientKey::parse("key", "a b".into()).is_err());
        assert!(ClientKey::parse("key", "x".repeat(129)).is_err());
        assert!(ClientKey::parse("key", "8f0c-11ee".into()).is_ok());
    }

    proptest! {
        #[test]
        fn content_with_a_visible_character_is_accepted(s in "\\PC*[a-z]\\PC*") {
            prop_assume!(s.chars().count() <= MAX_CONTENT_CHARS);
            prop_assert!(MessageContent::parse(s).is_ok());
        }

        #[test]
        fn white_space_only_content_is_rejected(s in "[ \\t\\n\\r]{0,50}") {
            prop_assert!(MessageContent::parse(s).is_err());
        }

        #[test]
        fn keys_round_trip(s in "[A-Za-z0-9_:.-]{1,128}") {
            prop_assert_eq!(ClientKey::parse("k", s.clone()).map(ClientKey::into_inner), Ok(s));
        }

        #[test]
        fn titles_are_trimmed(s in "[a-z]{1,50}", pad in " {0,5}") {
            let padded = format!("{pad}{s}{pad}");
            prop_assert_eq!(Title::parse(&padded).map(Title::into_inner), Ok(s));
        }
    }
}
