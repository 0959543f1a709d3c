//! A deterministic model, so demos and tests need no network and no key.
//!
//! Triggers (the user's last message): `/tool NAME {json}`, `/fail transient`,
//! `/fail fatal`, `/slow N`; anything else gets a reply that quotes the message.

use super::{Model, ModelChunk, ModelError, ModelRequest, ModelStream};
use async_trait::async_trait;
use chatsync_protocol::{content_text, Message, Role, ToolCallStatus};
use futures::StreamExt;
use std::time::Duration;

/// Delay between the chunks of `/slow N`.
const SLOW_CHUNK_DELAY: Duration = Duration::from_millis(100);
const MAX_SLOW_CHUNKS: u32 = 1000;

/// The id the scripted model goes by (`GET /api/models`).
pub const SCRIPTED_MODEL_ID: &str = "scripted";

#[derive(Debug, Clone)]
pub struct ScriptedModel {
    chunk_delay: Duration,
}

impl ScriptedModel {
    pub fn new(chunk_delay: Duration) -> Self {
        ScriptedModel { chunk_delay }
    }
}

/// What the model will do, decided from the conversation alone.
#[derive(Debug, PartialEq)]
enum Plan {
    Reply { chunks: Vec<ModelChunk>, slow: bool },
    Fail(ModelError),
}

fn words(text: &str) -> Vec<ModelChunk> {
    text.split_inclusive(' ')
        .map(|w| ModelChunk::Text(w.to_owned()))
        .collect()
}

/// What `/markdown` answers: GitHub-flavoured markdown with a table and a code block, and
/// raw HTML that a client must not render, so clients can show (and test) rich replies.
const MARKDOWN_SAMPLE: &str = "Here is **bold** text and a table:\n\n\
| a | b |\n| - | - |\n| 1 | 2 |\n\n\
```js\nconst answer = 40 + 2;\n```\n\n\
<img src=\"x\" onerror=\"window.__xss = 1\"> <b>raw</b>";

fn reply(text: &str) -> Plan {
    Plan::Reply {
        chunks: words(text),
        slow: false,
    }
}

/// After tool results: one sentence per call, quoting each result or the denial.
fn after_tools(messages: &[std::sync::Arc<Message>], tool_msgs: usize) -> Plan {
    let start = messages.len() - tool_msgs;
    let calls: Vec<_> = messages[..start]
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .and_then(|m| m.tool_calls.clone())
        .unwrap_or_default();
    let sentences: Vec<String> = messages[start..]
        .iter()
        .map(|m| {
            let call = calls
                .iter()
                .find(|c| Some(&c.id) == m.tool_call_id.as_ref());
            let name = call.map_or("tool", |c| c.name.as_str());
            match call.map(|c| c.status) {
                Some(ToolCallStatus::Denied) => {
                    format!("The {name} call was denied, so I did not run it.")
                }
                Some(ToolCallStatus::Failed) => {
                    format!("The {name} call failed: {}.", content_text(&m.content))
                }
                _ => format!("The {name} tool returned {}.", content_text(&m.content)),
            }
        })
        .collect();
    reply(&sentences.join(" "))
}

fn plan(request: &ModelRequest) -> Plan {
    let messages = &request.messages;
    let tool_msgs = messages
        .iter()
        .rev()
        .take_while(|m| m.role == Role::Tool)
        .count();
    if tool_msgs > 0 {
        return after_tools(messages, tool_msgs);
    }
    let Some(last) = messages.iter().rev().find(|m| m.role == Role::User) else {
        return reply("Hello! Send me a message and I will answer.");
    };
    let text = content_text(&last.content);
    let trimmed = text.trim();
    if let Some(rest) = trimmed.strip_prefix("/tool ") {
        let (name, args) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
        let arguments = if args.trim().is_empty() {
            Ok(serde_json::json!({}))
        } else {
            serde_json::from_str(args.trim())
        };
        return match arguments {
            Ok(arguments) => {
                let mut chunks = words(&format!("I will use the {name} tool."));
                chunks.push(ModelChunk::ToolCall {
                    id: format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
                    name: name.to_owned(),
                    arguments,
                });
                Plan::Reply {
                    chunks,
                    slow: false,
                }
            }
            Err(e) => reply(&format!("I could not read those tool arguments: {e}.")),
        };
    }
    match trimmed {
        "/fail transient" if request.attempt == 0 => {
            return Plan::Fail(ModelError::Transient {
                message: "scripted transient failure".into(),
                retry_after: None,
            })
        }
        "/fail transient" => return reply("Recovered after a transient failure."),
        "/fail fatal" => return Plan::Fail(ModelError::Fatal("scripted fatal failure".into())),
        "/markdown" => return reply(MARKDOWN_SAMPLE),
        _ => {}
    }
    if let Some(n) = trimmed.strip_prefix("/slow ") {
        if let Ok(n @ 1..=MAX_SLOW_CHUNKS) = n.trim().parse::<u32>() {
            return Plan::Reply {
                chunks: (1..=n)
                    .map(|i| {
                        ModelChunk::Text(format!("chunk {i}{}", if i < n { " " } else { "." }))
                    })
                    .collect(),
                slow: true,
            };
        }
    }
    reply(&quote(&text))
}

/// Words of the user's message quoted in a plain reply; a longer message is cut here.
const QUOTED_WORDS: usize = 8;

/// The plain reply: the first words of the message (the whole text only when it is that
/// short) and how many words it had. A reply never repeats a longer message whole, so a
/// client that searches the history for its own text finds only its own message.
fn quote(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let count = words.len();
    let shown = words[..count.min(QUOTED_WORDS)].join(" ");
    let more = if count > QUOTED_WORDS { "\u{2026}" } else { "" };
    let unit = if count == 1 { "word" } else { "words" };
    format!(
        "You said: \u{201c}{shown}{more}\u{201d} ({count} {unit}). I am the scripted model, \
         so I repeat what I hear."
    )
}

#[async_trait]
impl Model for ScriptedModel {
    /// Deterministic: a retried or resumed reply starts over in the same message and
    /// says the same again.
    fn replays_exactly(&self) -> bool {
        true
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let (chunks, slow) = match plan(&request) {
            Plan::Fail(e) => return Err(e),
            Plan::Reply { chunks, slow } => (chunks, slow),
        };
        let delay = if slow {
            SLOW_CHUNK_DELAY.max(self.chunk_delay)
        } else {
            self.chunk_delay
        };
        Ok(futures::stream::iter(chunks)
            .then(move |chunk| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok(chunk)
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatsync_protocol::{ContentPart, ToolCall};
    use std::sync::Arc;

    fn msg(role: Role, text: &str) -> Arc<Message> {
        Arc::new(crate::engine::new_message(
            role,
            vec![ContentPart::text(text)],
            None,
        ))
    }

    fn ask(text: &str, attempt: u32) -> Plan {
        plan(&ModelRequest {
            model: None,
            system_prompt: None,
            client_tools: vec![],
            messages: vec![msg(Role::User, text)],
            attempt,
        })
    }

    fn text_of(p: &Plan) -> String {
        match p {
            Plan::Reply { chunks, .. } => chunks
                .iter()
                .filter_map(|c| match c {
                    ModelChunk::Text(t) => Some(t.as_str()),
                    ModelChunk::ToolCall { .. } => None,
                })
                .collect(),
            Plan::Fail(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn plain_text_is_quoted_the_same_way_every_time() {
        let a = text_of(&ask("hello there", 0));
        assert_eq!(a, text_of(&ask("hello there", 0)));
        assert!(a.contains("\u{201c}hello there\u{201d} (2 words)"), "{a}");
    }

    #[test]
    fn markdown_answers_gfm_with_a_table_code_and_raw_html() {
        let reply = text_of(&ask("/markdown", 0));
        assert_eq!(reply, MARKDOWN_SAMPLE, "streamed whole, in order");
        for part in ["**bold**", "| 1 | 2 |", "```js\n", "<b>raw</b>"] {
            assert!(reply.contains(part), "{part} in {reply}");
        }
    }

    #[test]
    fn a_long_message_is_quoted_by_its_first_eight_words_and_counted() {
        let text = "one two three four five six seven eight nine ten eleven";
        let reply = text_of(&ask(text, 0));
        assert!(
            reply.contains(
                "\u{201c}one two three four five six seven eight\u{2026}\u{201d} (11 words)"
            ),
            "{reply}"
        );
        assert!(!reply.contains("nine"), "the rest is not repeated: {reply}");
        assert!(text_of(&ask("hi", 0)).contains("(1 word)"));
    }

    #[test]
    fn tool_trigger_requests_the_named_tool_with_its_arguments() {
        let Plan::Reply { chunks, .. } = ask(r#"/tool calculator {"expression":"2+3"}"#, 0) else {
            panic!("expected a reply");
        };
        let call = chunks.iter().find_map(|c| match c {
            ModelChunk::ToolCall {
                name, arguments, ..
            } => Some((name.clone(), arguments.clone())),
            ModelChunk::Text(_) => None,
        });
        assert_eq!(
            call,
            Some((
                "calculator".into(),
                serde_json::json!({"expression": "2+3"})
            ))
        );
        assert!(text_of(&ask("/tool calculator {oops", 0)).contains("could not read"));
    }

    #[test]
    fn fail_triggers() {
        assert!(matches!(
            ask("/fail transient", 0),
            Plan::Fail(ModelError::Transient { .. })
        ));
        assert!(text_of(&ask("/fail transient", 1)).contains("Recovered"));
        assert!(matches!(
            ask("/fail fatal", 2),
            Plan::Fail(ModelError::Fatal(_))
        ));
    }

    #[test]
    fn slow_streams_n_chunks_slowly() {
        let Plan::Reply { chunks, slow } = ask("/slow 5", 0) else {
            panic!("expected a reply");
        };
        assert!(slow);
        assert_eq!(chunks.len(), 5);
        assert!(text_of(&ask("/slow lots", 0)).contains("/slow lots"));
    }

    #[test]
    fn after_tool_results_the_reply_quotes_results_and_denials() {
        let mut assistant = (*msg(Role::Assistant, "I will use tools.")).clone();
        assistant.tool_calls = Some(vec![
            ToolCall {
                id: "a".into(),
                name: "calculator".into(),
                arguments: serde_json::json!({}),
                status: ToolCallStatus::Completed,
                result: Some("5".into()),
            },
            ToolCall {
                id: "b".into(),
                name: "current_time".into(),
                arguments: serde_json::json!({}),
                status: ToolCallStatus::Denied,
                result: None,
            },
        ]);
        let mut r1 = (*msg(Role::Tool, "5")).clone();
        r1.tool_call_id = Some("a".into());
        let mut r2 = (*msg(Role::Tool, "denied")).clone();
        r2.tool_call_id = Some("b".into());
        let p = plan(&ModelRequest {
            model: None,
            system_prompt: None,
            client_tools: vec![],
            messages: vec![
                msg(Role::User, "/tool calculator {}"),
                Arc::new(assistant),
                Arc::new(r1),
                Arc::new(r2),
            ],
            attempt: 0,
        });
        let text = text_of(&p);
        assert!(text.contains("calculator tool returned 5"), "{text}");
        assert!(text.contains("current_time call was denied"), "{text}");
    }
}
