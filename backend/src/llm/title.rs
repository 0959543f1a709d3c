//! Naming a chat after its first turn: one short model call with a bounded prompt, whose
//! answer becomes the title when it is usable. Only providers that say so are asked
//! ([`Model::names_chats`]); the scripted model keeps the first words the client gave.

use super::{Model, ModelChunk, ModelRequest};
use crate::domain::Title;
use futures::StreamExt;
use std::time::Duration;

/// What the model is told to do; a fake model in the tests recognises the request by it.
pub const TITLE_INSTRUCTION: &str = "Name this chat in at most six words, in the language \
of the user's message. Answer with the title only: no quotes, no punctuation at the end.";
/// Characters of the user's message and of the reply quoted in the request, each.
const MAX_QUOTED_CHARS: usize = 1_000;
/// Characters of the answer read; the model's answer is cut off here.
const MAX_ANSWER_CHARS: usize = 200;
/// Characters a title made by the model may have (longer answers are cut at a word).
pub const MAX_TITLE_CHARS: usize = 60;
/// How long the title call may take before the chat keeps its title.
const TITLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The title the server gives a chat created without one.
pub const DEFAULT_TITLE: &str = "New chat";
/// The first words the web app names a new chat with: its first line, cut near this.
const FIRST_WORDS_CHARS: usize = 48;

/// Whether `title` is one a client or the server gave by default (the default title, or the
/// first words of `first_message`), so a title the model proposes may replace it.
pub fn is_placeholder(title: &str, first_message: &str) -> bool {
    title == DEFAULT_TITLE || title == first_words(first_message)
}

/// The web app's title for a new chat: the first line, cut at a word near the limit.
fn first_words(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or_default();
    if line.chars().count() <= FIRST_WORDS_CHARS {
        return line.to_owned();
    }
    let cut: String = line.chars().take(FIRST_WORDS_CHARS).collect();
    match cut.rfind(' ') {
        Some(space) if cut[..space].chars().count() > FIRST_WORDS_CHARS / 2 => {
            format!("{}…", &cut[..space])
        }
        _ => format!("{cut}…"),
    }
}

fn quote(text: &str) -> String {
    text.chars().take(MAX_QUOTED_CHARS).collect()
}

/// What the model reads to name the chat that began with `user` and `reply` (sent as one
/// user message, with [`TITLE_INSTRUCTION`] as the system prompt).
pub fn title_prompt(user: &str, reply: &str) -> String {
    format!("User: {}\n\nAssistant: {}", quote(user), quote(reply))
}

/// Asks `model` for a title; `None` when it fails, is slow, or answers nothing usable.
pub async fn ask_title(model: &dyn Model, request: ModelRequest) -> Option<Title> {
    let answer = tokio::time::timeout(TITLE_TIMEOUT, async {
        let mut stream = model.stream(request).await.ok()?;
        let mut answer = String::new();
        while let Some(chunk) = stream.next().await {
            match chunk.ok()? {
                ModelChunk::Text(text) => answer.push_str(&text),
                // A title is words; a model that calls a tool instead gives none.
                ModelChunk::ToolCall { .. } => return None,
            }
            if answer.chars().count() >= MAX_ANSWER_CHARS {
                break;
            }
        }
        Some(answer)
    })
    .await
    .ok()??;
    clean(&answer)
}

/// The title in a model's answer: its first line without quotes or a closing full stop,
/// at most [`MAX_TITLE_CHARS`] (cut at a word).
fn clean(answer: &str) -> Option<Title> {
    let line = answer.trim().lines().next()?.trim();
    let line = line
        .trim_matches(|c: char| matches!(c, '"' | '\'' | '“' | '”' | '«' | '»' | '*' | '#'))
        .trim()
        .trim_end_matches('.')
        .trim();
    let line = line.strip_prefix("Title:").unwrap_or(line).trim();
    let title = if line.chars().count() <= MAX_TITLE_CHARS {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(MAX_TITLE_CHARS).collect();
        match cut.rfind(' ') {
            Some(space) if space > 0 => format!("{}…", &cut[..space]),
            _ => format!("{cut}…"),
        }
    };
    Title::parse(&title).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_the_default_and_the_first_words() {
        assert!(is_placeholder("New chat", "anything"));
        assert!(is_placeholder("Plan a trip", "  Plan a trip\nto Rome"));
        let long = "Please help me plan a two week trip through the north of Italy by train";
        assert!(is_placeholder(
            "Please help me plan a two week trip through the…",
            long
        ));
        assert!(!is_placeholder("Italy", long));
    }

    #[test]
    fn answers_are_cleaned_and_bounded() {
        let title = |a: &str| clean(a).map(Title::into_inner);
        assert_eq!(
            title("\"Trip to Rome.\"\nmore"),
            Some("Trip to Rome".into())
        );
        assert_eq!(title("Title: Rome"), Some("Rome".into()));
        assert_eq!(title("  \n"), None);
        assert_eq!(title("\"\""), None);
        let long = title(&"word ".repeat(40)).expect("title");
        assert!(long.chars().count() <= MAX_TITLE_CHARS + 1, "{long}");
        assert!(long.ends_with('…'));
    }
}
