//! Titles that follow the chat: a model that names chats titles one after its first turn,
//! only while the title is the placeholder a client or the server gave; the scripted model
//! keeps the first words.

mod common;
use common::{eventually, TestApp};

use async_trait::async_trait;
use axum::http::StatusCode;
use chatsync::llm::title::TITLE_INSTRUCTION;
use chatsync::llm::{Model, ModelChunk, ModelError, ModelRequest, ModelStream};
use futures::StreamExt;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

const WAIT: Duration = Duration::from_secs(20);

/// Replies to a chat, and answers a title request with a quoted title and a full stop
/// (which the server takes off), counting the title requests.
#[derive(Debug, Default)]
struct Namer {
    asked: AtomicUsize,
}

#[async_trait]
impl Model for Namer {
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let text = if request.system_prompt.as_deref() == Some(TITLE_INSTRUCTION) {
            self.asked.fetch_add(1, Ordering::SeqCst);
            "\"Trip to Rome.\"\nThat is the title."
        } else {
            "Here is a plan for Rome."
        };
        let chunks = vec![Ok(ModelChunk::Text(text.into()))];
        Ok(futures::stream::iter(chunks).boxed())
    }

    fn names_chats(&self) -> bool {
        true
    }
}

/// Names chats like [`Namer`], but holds each title answer until the test lets it go, and
/// says when a title is asked for and when its answer has been read.
#[derive(Debug)]
struct HeldNamer {
    asked: Notify,
    release: Semaphore,
    read: Arc<Notify>,
}

impl Default for HeldNamer {
    fn default() -> Self {
        Self {
            asked: Notify::new(),
            release: Semaphore::new(0),
            read: Arc::default(),
        }
    }
}

/// Tells `HeldNamer::read` when the stream it is part of is dropped (read to its end).
struct OnDrop(Arc<Notify>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

#[async_trait]
impl Model for HeldNamer {
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        if request.system_prompt.as_deref() != Some(TITLE_INSTRUCTION) {
            let reply = vec![Ok(ModelChunk::Text("Here is a plan for Rome.".into()))];
            return Ok(futures::stream::iter(reply).boxed());
        }
        self.asked.notify_one();
        self.release.acquire().await.expect("open").forget();
        let read = OnDrop(self.read.clone());
        let answer = vec![Ok(ModelChunk::Text("Trip to Rome".into()))];
        Ok(futures::stream::iter(answer)
            .map(move |chunk| {
                let _ = &read;
                chunk
            })
            .boxed())
    }

    fn names_chats(&self) -> bool {
        true
    }
}

async fn chat(app: &TestApp, title: Option<&str>) -> String {
    let a = app
        .post_json("/api/contexts", json!({ "title": title }))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.body["id"].as_str().expect("id").to_owned()
}

async fn send(app: &TestApp, id: &str, text: &str) {
    let a = app
        .post_json(
            &format!("/api/contexts/{id}/actions/send_message"),
            json!({ "content": text }),
        )
        .await;
    assert!(a.status.is_success(), "{}", a.body);
}

async fn rename(app: &TestApp, id: &str, title: &str) {
    let a = app
        .call(
            axum::http::Method::PATCH,
            &format!("/api/contexts/{id}"),
            &[("content-type", "application/json")],
            Some(&json!({ "title": title }).to_string()),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

async fn title(app: &TestApp, id: &str) -> String {
    let a = app.get(&format!("/api/contexts/{id}")).await;
    a.body["title"].as_str().expect("title").to_owned()
}

#[tokio::test]
async fn the_model_names_a_chat_after_its_first_turn_unless_a_person_named_it() {
    let namer = Arc::new(Namer::default());
    let app = TestApp::spawn_with_model(&[], namer.clone()).await;

    // Named by the user at create, or renamed before the first turn: kept, never asked.
    let named = chat(&app, Some("Holiday ideas")).await;
    send(&app, &named, "Plan a trip to Rome").await;
    let renamed = chat(&app, None).await;
    rename(&app, &renamed, "Mine").await;
    send(&app, &renamed, "Plan a trip to Rome").await;
    // Even a rename to what looks like a placeholder (the first words) is a person's.
    let confirmed = chat(&app, None).await;
    rename(&app, &confirmed, "Plan a trip to Rome").await;
    send(&app, &confirmed, "Plan a trip to Rome").await;

    // The web app's first words, and the server's default: replaced once the turn rests.
    let first_words = chat(&app, Some("Plan a trip to Rome")).await;
    send(&app, &first_words, "Plan a trip to Rome\nin May, by train").await;
    let untitled = chat(&app, None).await;
    send(&app, &untitled, "Plan a trip to Rome").await;
    for id in [&first_words, &untitled] {
        eventually(WAIT, "the model's title", || async {
            (title(&app, id).await == "Trip to Rome").then_some(())
        })
        .await;
    }
    assert_eq!(title(&app, &named).await, "Holiday ideas");
    assert_eq!(title(&app, &renamed).await, "Mine");
    assert_eq!(title(&app, &confirmed).await, "Plan a trip to Rome");
    assert_eq!(
        namer.asked.load(Ordering::SeqCst),
        2,
        "asked for the two placeholders only"
    );

    // Later turns do not rename, and a rename by the user stays.
    send(&app, &untitled, "And Florence?").await;
    assert_eq!(namer.asked.load(Ordering::SeqCst), 2);
    assert_eq!(title(&app, &untitled).await, "Trip to Rome");
}

#[tokio::test]
async fn the_scripted_model_keeps_the_first_words() {
    let app = TestApp::spawn(&[]).await;
    let id = chat(&app, Some("hello there")).await;
    send(&app, &id, "hello there").await;
    let state = app.get(&format!("/api/contexts/{id}/state")).await;
    assert_eq!(state.body["status"], "idle", "{}", state.body);
    assert_eq!(title(&app, &id).await, "hello there");
}

#[tokio::test]
async fn a_rename_made_while_the_model_names_the_chat_stays() {
    let namer = Arc::new(HeldNamer::default());
    let app = TestApp::spawn_with_model(&[], namer.clone()).await;
    let within = |what: &'static str, waited| async move {
        tokio::time::timeout(WAIT, waited)
            .await
            .unwrap_or_else(|_| panic!("{what} within {WAIT:?}"));
    };
    // Another name; the first words kept on purpose (Enter in the rename box); a name and
    // then the first words again. Each is the user's choice, made after the model was asked.
    let renames: [&[&str]; 3] = [
        &["Rome in May"],
        &["Plan a trip to Rome"],
        &["Rome in May", "Plan a trip to Rome"],
    ];
    for names in renames {
        let id = chat(&app, Some("Plan a trip to Rome")).await;
        send(&app, &id, "Plan a trip to Rome").await;
        within("the title asked for", namer.asked.notified()).await;
        for name in names {
            rename(&app, &id, name).await;
        }
        namer.release.add_permits(1);
        within("the title answered", namer.read.notified()).await;
        // The model's title went into the chat's mailbox as its answer was read; a send
        // through the same mailbox is served after it.
        send(&app, &id, "And Florence?").await;
        let kept = names.last().expect("a name");
        assert_eq!(&title(&app, &id).await, kept, "renamed to {names:?}");
    }
}
