//! Input parsed into domain types at the boundary: once a value has one of these types,
//! it is known to be valid.

use std::fmt;
use std::sync::Arc;

/// Longest message content accepted, in characters (the body limit applies too).
pub const MAX_CONTENT_CHARS: usize = 100_000;
const MAX_KEY_CHARS: usize = 128;
const MAX_TITLE_CHARS: usize = 200;
/// Longest system prompt accepted, in characters.
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 20_000;
/// Longest `model_id` accepted, in characters (real model names are far shorter).
pub const MAX_MODEL_ID_CHARS: usize = 200;
/// Longest `mode` accepted, in characters.
pub const MAX_MODE_CHARS: usize = 64;
/// Longest user id accepted, in bytes (the sync module's `userId` has the same bound).
pub const MAX_OWNER_BYTES: usize = 256;

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

    pub fn as_str(&self) -> &str {
        &self.0
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
    /// What the message's turn is given besides it (none through `/api`).
    pub turn: TurnOptions,
    /// User messages sent with it in one request, each stored as its own message before
    /// it, in order, in the same save (the OpenAI API's input lists); only at rest.
    pub preceding: Vec<MessageContent>,
}

impl NewMessage {
    /// The client message id and the idempotency key, as stored.
    pub fn keys(&self) -> (Option<String>, Option<String>) {
        let owned = |k: &Option<ClientKey>| k.clone().map(ClientKey::into_inner);
        (owned(&self.client_message_id), owned(&self.idempotency_key))
    }

    /// A message without client keys.
    pub fn text(content: impl Into<String>) -> Result<Self, ParseError> {
        Ok(NewMessage {
            content: MessageContent::parse(content.into())?,
            client_message_id: None,
            idempotency_key: None,
            if_busy: chatsync_protocol::IfBusy::Enqueue,
            turn: TurnOptions::default(),
            preceding: Vec::new(),
        })
    }
}

/// What a turn is given besides its message, by the request that starts or continues it:
/// the OpenAI API's function tools (run by the client) and `instructions` (for this turn
/// only, never carried over). Stored with the context while its turn runs or rests (and
/// with a queued message), so a restart resumes the turn with them. `/api` gives none.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TurnOptions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_tools: Vec<ClientTool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// A tool the client declared and runs itself: the model's call to it waits for the
/// client's output (`AwaitingToolOutput`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientTool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its arguments' JSON Schema, as declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

impl TurnOptions {
    /// Whether a call to `name` is the client's to answer.
    pub fn declares(&self, name: &str) -> bool {
        self.client_tools.iter().any(|t| t.name == name)
    }

    /// As stored: `None` for no options (the column stays empty).
    pub fn encode(&self) -> Option<String> {
        (*self != TurnOptions::default()).then(|| serde_json::to_string(self).unwrap_or_default())
    }

    /// From the stored column.
    pub fn decode(stored: Option<&str>) -> Result<TurnOptions, serde_json::Error> {
        stored.map_or(Ok(TurnOptions::default()), serde_json::from_str)
    }

    /// The system prompt a turn's model call gets: the context's, then this turn's
    /// instructions.
    pub fn system_prompt(&self, context: Option<String>) -> Option<String> {
        match (context, &self.instructions) {
            (Some(c), Some(i)) => Some(format!("{c}\n\n{i}")),
            (c, None) => c,
            (None, Some(i)) => Some(i.clone()),
        }
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
        if title.chars().any(char::is_control) {
            return Err(ParseError(
                "title must not contain control characters".into(),
            ));
        }
        Ok(Title(title.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// Who a context belongs to: an authenticated user's id (a token's `sub`, the proxy's
/// header, or `local`), 1 to [`MAX_OWNER_BYTES`] bytes without control characters.
/// Cheap to clone: every request carries one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(Arc<str>);

impl Owner {
    /// The one user of `--auth none`.
    pub const LOCAL: &str = "local";

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > MAX_OWNER_BYTES {
            return Err(ParseError(format!(
                "a user id must have 1 to {MAX_OWNER_BYTES} bytes"
            )));
        }
        if raw.chars().any(char::is_control) {
            return Err(ParseError(
                "a user id must not contain control characters".into(),
            ));
        }
        Ok(Owner(raw.into()))
    }

    /// [`Owner::LOCAL`].
    pub fn local() -> Self {
        // Shared, not allocated: with `--auth none` every request is this user.
        static LOCAL: std::sync::LazyLock<Owner> =
            std::sync::LazyLock::new(|| Owner(Owner::LOCAL.into()));
        LOCAL.clone()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A search as the user typed it, reduced to the words the full-text indexes know: runs
/// of letters and digits, lower-cased. Everything else (quotes, operators such as `NEAR(`
/// or `OR`'s punctuation, column filters) is a separator, so no input reaches either
/// database's query syntax. Each word matches as a prefix, and every word must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery(Vec<String>);

/// Longest `q` accepted, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;
/// Words beyond this many are ignored: they would only narrow a search that long.
const MAX_SEARCH_WORDS: usize = 16;

impl SearchQuery {
    pub fn parse(q: &str) -> Result<Self, ParseError> {
        if q.chars().count() > MAX_SEARCH_CHARS {
            return Err(ParseError(format!(
                "q must have at most {MAX_SEARCH_CHARS} characters"
            )));
        }
        let words: Vec<String> = q
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(MAX_SEARCH_WORDS)
            .map(str::to_lowercase)
            .collect();
        if words.is_empty() {
            return Err(ParseError("q must contain a letter or a digit".into()));
        }
        Ok(SearchQuery(words))
    }

    /// The words, lower-cased, in the order typed; each database's query syntax is built
    /// from them in `store::dialect`.
    pub fn words(&self) -> &[String] {
        &self.0
    }
}

/// A name chosen by the client that is sent on as is (`model_id`, `mode`): 1 to `max`
/// characters, no white space or control characters.
fn name(what: &str, value: String, max: usize) -> Result<String, ParseError> {
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(ParseError(format!(
            "{what} must have 1 to {max} characters"
        )));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ParseError(format!(
            "{what} must not contain white space or control characters"
        )));
    }
    Ok(value)
}

/// The model a context asks for upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId(String);

impl ModelId {
    pub fn parse(value: String) -> Result<Self, ParseError> {
        name("model_id", value, MAX_MODEL_ID_CHARS).map(ModelId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A context's free-form mode label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mode(String);

impl Mode {
    pub fn parse(value: String) -> Result<Self, ParseError> {
        name("mode", value, MAX_MODE_CHARS).map(Mode)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The instructions a context gives the model: kept as sent (new lines and all), at most
/// [`MAX_SYSTEM_PROMPT_CHARS`] characters, and no NUL (which some databases refuse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPrompt(String);

impl SystemPrompt {
    pub fn parse(value: String) -> Result<Self, ParseError> {
        let chars = value.chars().count();
        if chars > MAX_SYSTEM_PROMPT_CHARS {
            return Err(ParseError(format!(
                "system_prompt has {chars} characters; at most {MAX_SYSTEM_PROMPT_CHARS} are accepted"
            )));
        }
        if value.contains('\0') {
            return Err(ParseError("system_prompt must not contain NUL".into()));
        }
        Ok(SystemPrompt(value))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A new context as its creator asked for it, parsed: what `Engine::create_context`
/// takes. Every part may be left out: the title is then "New chat", and the model, mode
/// and system prompt are the provider's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewContext {
    pub title: Option<Title>,
    pub model_id: Option<ModelId>,
    pub mode: Option<Mode>,
    pub system_prompt: Option<SystemPrompt>,
}

impl NewContext {
    /// The title, and the configuration as it is stored and answered.
    pub fn into_parts(self) -> (Option<Title>, chatsync_protocol::ContextConfig) {
        let config = chatsync_protocol::ContextConfig {
            model_id: self.model_id.map(ModelId::into_inner),
            mode: self.mode.map(Mode::into_inner),
            system_prompt: self.system_prompt.map(SystemPrompt::into_inner),
        };
        (self.title, config)
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
    fn system_prompts_are_bounded_and_have_no_nul() {
        assert!(SystemPrompt::parse("x".repeat(MAX_SYSTEM_PROMPT_CHARS)).is_ok());
        assert!(SystemPrompt::parse("x".repeat(MAX_SYSTEM_PROMPT_CHARS + 1)).is_err());
        assert!(SystemPrompt::parse("a\0b".into()).is_err());
        assert!(ModelId::parse(String::new()).is_err());
    }

    #[test]
    fn owners_are_bounded_in_bytes_and_printable() {
        assert_eq!(
            Owner::parse("alice").map(|o| o.as_str().to_owned()),
            Ok("alice".into())
        );
        assert_eq!(Owner::local().as_str(), "local");
        assert!(Owner::parse(&"a".repeat(MAX_OWNER_BYTES)).is_ok());
        assert!(Owner::parse(&"a".repeat(MAX_OWNER_BYTES + 1)).is_err());
        // Bytes, not characters: 128 two-byte characters fit, 129 do not.
        assert!(Owner::parse(&"é".repeat(MAX_OWNER_BYTES / 2)).is_ok());
        assert!(Owner::parse(&"é".repeat(MAX_OWNER_BYTES / 2 + 1)).is_err());
        for bad in ["", "a\nb", "\u{7f}", "tab\there"] {
            assert!(Owner::parse(bad).is_err(), "{bad:?}");
        }
        // What a token's `sub` or a proxy's header may hold today stays accepted.
        for ok in [
            "user@example.com",
            "auth0|5f7c8ec7c33c6c004bbafe82",
            " padded ",
            "名前",
        ] {
            assert!(Owner::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn a_new_context_keeps_what_was_asked_for() {
        let new = NewContext {
            title: Some(Title::parse(" Plans ").expect("title")),
            model_id: Some(ModelId::parse("gpt-4o".into()).expect("model")),
            mode: None,
            system_prompt: Some(SystemPrompt::parse("Be brief.".into()).expect("prompt")),
        };
        let (title, config) = new.into_parts();
        assert_eq!(title.map(Title::into_inner), Some("Plans".into()));
        assert_eq!(config.model_id.as_deref(), Some("gpt-4o"));
        assert_eq!(config.mode, None);
        assert_eq!(config.system_prompt.as_deref(), Some("Be brief."));
        let (title, config) = NewContext::default().into_parts();
        assert_eq!((title, config), (None, Default::default()));
    }

    #[test]
    fn turn_options_store_as_nothing_when_empty_and_round_trip_otherwise() {
        let none = TurnOptions::default();
        assert_eq!(none.encode(), None);
        assert_eq!(TurnOptions::decode(None).ok(), Some(none));
        let some = TurnOptions {
            client_tools: vec![ClientTool {
                name: "lookup".into(),
                description: None,
                parameters: Some(serde_json::json!({"type": "object"})),
            }],
            instructions: Some("Answer in French.".into()),
        };
        let stored = some.encode();
        assert_eq!(
            TurnOptions::decode(stored.as_deref()).ok(),
            Some(some.clone())
        );
        assert!(some.declares("lookup") && !some.declares("calculator"));
        assert!(TurnOptions::decode(Some("{not json")).is_err());
    }

    #[test]
    fn a_turns_instructions_follow_the_chats_system_prompt() {
        let turn = |i: Option<&str>| TurnOptions {
            instructions: i.map(str::to_owned),
            ..TurnOptions::default()
        };
        let chat = || Some("Be brief.".to_owned());
        assert_eq!(
            turn(Some("Answer in French."))
                .system_prompt(chat())
                .as_deref(),
            Some("Be brief.\n\nAnswer in French.")
        );
        assert_eq!(turn(None).system_prompt(chat()), chat());
        assert_eq!(
            turn(Some("Only this.")).system_prompt(None).as_deref(),
            Some("Only this.")
        );
        assert_eq!(turn(None).system_prompt(None), None);
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
        fn owners_round_trip(s in "[^\\p{Cc}]{1,64}") {
            prop_assume!(s.len() <= MAX_OWNER_BYTES);
            let owner = Owner::parse(&s).expect("printable");
            prop_assert_eq!(owner.as_str(), s.as_str());
        }

        #[test]
        fn owners_with_a_control_character_are_refused(
            a in "[a-z]{0,10}", bad in "\\p{Cc}", b in "[a-z]{0,10}"
        ) {
            let id = format!("{a}{bad}{b}");
            prop_assert!(Owner::parse(&id).is_err());
        }

        #[test]
        fn owners_longer_than_256_bytes_are_refused(s in "[a-zé]{129,300}") {
            prop_assert_eq!(Owner::parse(&s).is_ok(), s.len() <= MAX_OWNER_BYTES);
        }

        #[test]
        fn names_round_trip(s in "[A-Za-z0-9_:./-]{1,64}") {
            prop_assert_eq!(ModelId::parse(s.clone()).map(ModelId::into_inner), Ok(s.clone()));
            prop_assert_eq!(Mode::parse(s.clone()).map(Mode::into_inner), Ok(s));
        }

        #[test]
        fn names_with_space_or_control_characters_are_refused(
            a in "[a-z]{0,10}", bad in "[ \t\n\u{0}\u{7f}]", b in "[a-z]{0,10}"
        ) {
            let s = format!("{a}{bad}{b}");
            prop_assert!(ModelId::parse(s.clone()).is_err());
            prop_assert!(Mode::parse(s).is_err());
        }

        #[test]
        fn names_longer_than_their_limit_are_refused(extra in 1usize..100) {
            prop_assert!(ModelId::parse("m".repeat(MAX_MODEL_ID_CHARS + extra)).is_err());
            prop_assert!(Mode::parse("m".repeat(MAX_MODE_CHARS + extra)).is_err());
        }

        #[test]
        fn system_prompts_are_kept_as_sent_up_to_the_limit(s in "[^\u{0}]{0,200}") {
            prop_assert_eq!(SystemPrompt::parse(s.clone()).map(SystemPrompt::into_inner), Ok(s));
        }

        #[test]
        fn titles_with_control_characters_are_refused(
            a in "[a-z]{1,10}", bad in "[\u{0}-\u{1f}\u{7f}]", b in "[a-z]{1,10}"
        ) {
            let title = format!("{a}{bad}{b}");
            prop_assert!(Title::parse(&title).is_err());
        }

        #[test]
        fn titles_are_trimmed(s in "[a-z]{1,50}", pad in " {0,5}") {
            let padded = format!("{pad}{s}{pad}");
            prop_assert_eq!(Title::parse(&padded).map(Title::into_inner), Ok(s));
        }
    }

    #[test]
    fn search_keeps_words_and_drops_query_syntax() {
        let q = SearchQuery::parse(r#"Rust "NEAR(async, tokio)" title:x OR-*"#).expect("words");
        assert_eq!(
            q.words(),
            ["rust", "near", "async", "tokio", "title", "x", "or"]
        );
        for bad in ["", "   ", "\"", "NEAR(", "*", "()\"'"] {
            if bad.chars().any(char::is_alphanumeric) {
                continue;
            }
            assert!(SearchQuery::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SearchQuery::parse(&"a".repeat(MAX_SEARCH_CHARS + 1)).is_err());
        assert!(SearchQuery::parse(&"a ".repeat(MAX_SEARCH_CHARS / 2)).is_ok());
    }

    proptest! {
        #[test]
        fn search_words_are_only_letters_and_digits(q in ".{0,200}") {
            if let Ok(parsed) = SearchQuery::parse(&q) {
                for word in parsed.words() {
                    prop_assert!(!word.is_empty() && word.chars().all(char::is_alphanumeric), "{word}");
                }
            }
        }
    }
}
