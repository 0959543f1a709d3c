//! What the user's sends and actions do to the view ([`Syncer`]) and the offline queue
//! ([`Outbox`]) together: a send shown at once and queued, a retry, a replay, a discard,
//! and what an action's answer changes. The shell hands both in, carries out the
//! [`Command`]s and the replay asked for, and sends what [`Outgoing`] names.
//!
//! Architecture Invariant: like the rest of the core, nothing here reads a clock, a random
//! source or the network; the shell passes the new message's id and time, whether the
//! browser is online, and the time an answer came back.

use chatsync_protocol::{ChatState, ContextSummary, ListContextsResponse, Timestamp};

use super::api::{self, Body};
use super::error::{ErrorKind, SyncError};
use super::outbox::{Outbox, Queued, Settled};
use super::syncer::{Command, Syncer};
use super::view::{ContextListView, ContextSummaryView};

/// What a queued message shows until a replay sends it.
pub const QUEUED: &str = "not sent yet: queued until the server can be reached";

/// The rejection of a send made offline, or behind older queued sends: it waits in the
/// queue (`code: "queued"`).
#[inline(never)]
pub fn queued_error() -> SyncError {
    SyncError {
        code: Some("queued".into()),
        ..SyncError::network(QUEUED)
    }
}

/// A message send to make now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub context_id: String,
    pub client_message_id: String,
    pub text: String,
}

/// What became of a new send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sending {
    /// Shown as pending and recorded in the queue: send it now.
    Now(Outgoing),
    /// Shown as queued: older sends of the chat wait for a replay, or the browser is
    /// offline. The shell tries a replay and rejects with [`queued_error`].
    Queued,
}

/// The context actions apply to.
pub fn current_context(syncer: &Syncer) -> Result<String, SyncError> {
    syncer
        .context_id()
        .map(str::to_owned)
        .ok_or_else(|| SyncError::invalid("no context selected"))
}

/// A new message from the user: shown at once, recorded in the queue before it goes out
/// (a full queue refuses it and nothing is shown), sent now unless it must wait its turn.
pub fn send(
    syncer: &mut Syncer,
    outbox: &mut Outbox,
    online: bool,
    text: String,
    client_message_id: String,
    created_at: Timestamp,
) -> Result<Sending, SyncError> {
    let context_id = current_context(syncer)?;
    if text.trim().is_empty() {
        return Err(SyncError::invalid("a message needs some text"));
    }
    let now = outbox.may_send_now(online, &context_id);
    // A `String` in the browser build, a `Copy` date in a workspace build with chrono on.
    #[allow(clippy::clone_on_copy)]
    let queued_at = created_at.clone();
    outbox.push(Queued {
        context_id: context_id.clone(),
        client_message_id: client_message_id.clone(),
        text: text.clone(),
        created_at: queued_at,
        failure: None,
    })?;
    syncer.add_local(client_message_id.clone(), text.clone(), created_at);
    if !now {
        syncer.fail_local(&client_message_id, QUEUED.to_owned());
        // Kept for a replay, and not on its way.
        outbox.settled(&client_message_id, Err(&queued_error()));
        return Ok(Sending::Queued);
    }
    Ok(Sending::Now(Outgoing {
        context_id,
        client_message_id,
        text,
    }))
}

/// The user re-sends a failed message with its original `client_message_id` (so the server
/// stores it at most once): pending again, and on its way in the queue (queued again if it
/// had left it).
pub fn retry(
    syncer: &mut Syncer,
    outbox: &mut Outbox,
    client_message_id: String,
) -> Result<Outgoing, SyncError> {
    let context_id = current_context(syncer)?;
    let text = syncer
        .resend_local(&client_message_id)
        .ok_or_else(|| SyncError::invalid("no failed message with that id"))?;
    if !outbox.resend(&client_message_id) {
        outbox.push(Queued {
            context_id: context_id.clone(),
            client_message_id: client_message_id.clone(),
            text: text.clone(),
            created_at: Timestamp::default(),
            failure: None,
        })?;
    }
    Ok(Outgoing {
        context_id,
        client_message_id,
        text,
    })
}

/// The user gives up on a failed message: it leaves the view and the queue. False for any
/// id that is not a failed message.
pub fn discard(syncer: &mut Syncer, outbox: &mut Outbox, client_message_id: &str) -> bool {
    let discarded = syncer.discard_local(client_message_id);
    if discarded {
        outbox.discard(client_message_id);
    }
    discarded
}

/// The next queued send to replay, if this tab may replay one now; it shows as pending
/// again.
pub fn replay(syncer: &mut Syncer, outbox: &mut Outbox, online: bool) -> Option<Outgoing> {
    let next = outbox.next_replay(online, &syncer.replays())?;
    syncer.resend_local(&next.client_message_id);
    Some(Outgoing {
        context_id: next.context_id,
        client_message_id: next.client_message_id,
        text: next.text,
    })
}

/// Shows the current context's queued sends (after a reload or a chat switch).
pub fn show_queued(syncer: &mut Syncer, outbox: &Outbox) {
    if let Some(context) = syncer.context_id().map(str::to_owned) {
        syncer.show_queued(outbox.for_context(&context), QUEUED);
    }
}

/// What a request's answer is for; every promise the class returns is one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An action on the current context: the state it answers with is shown at once.
    State,
    /// A message send: like `State`, but a failure marks the local message failed, and
    /// the queue learns how it went.
    Sent {
        client_message_id: String,
    },
    /// A delete: when the context is the current one, polling it stops.
    Deleted {
        context_id: String,
    },
    Summary,
    List,
    /// The body as the server sent it.
    Raw,
}

/// An answer read as its [`Answer`] says.
#[derive(Debug, Clone, PartialEq)]
pub enum Answered {
    /// Nothing to hand back (the promise resolves to `undefined`).
    Done,
    /// The context's state, to show (an action's or a send's answer).
    State(ChatState),
    Summary(ContextSummaryView),
    List(ContextListView),
    /// The body itself: the shell hands it back as it is.
    Raw,
}

/// Reads a successful answer's body as `answer` expects it; an error answer is the
/// server's error.
pub fn read(answer: &Answer, status: u16, body: &impl Body) -> Result<Answered, SyncError> {
    match answer {
        Answer::State | Answer::Sent { .. } => api::decode(status, body).map(Answered::State),
        Answer::Deleted { .. } => api::expect_success(status, body).map(|()| Answered::Done),
        Answer::Summary => api::decode::<ContextSummary>(status, body)
            .map(|s| Answered::Summary(ContextSummaryView::from(s))),
        Answer::List => api::decode::<ListContextsResponse>(status, body)
            .map(|l| Answered::List(ContextListView::from(l))),
        Answer::Raw => api::expect_success(status, body).map(|()| Answered::Raw),
    }
}

/// What the shell does once an answer was settled.
#[derive(Debug, PartialEq)]
pub struct Settlement {
    pub commands: Vec<Command>,
    /// A state was shown: hand the body over to the other tabs of the chat.
    pub shown: bool,
    /// A send of the queue was delivered: the next one may go.
    pub replay: bool,
    /// What the promise settles with (a state shown is [`Answered::Done`]).
    pub value: Result<Answered, SyncError>,
}

/// Applies an answer (or the failure to get one) to the view and the queue. `now` is when
/// it came back, for the next poll's timer.
pub fn settle(
    syncer: &mut Syncer,
    outbox: &mut Outbox,
    answer: &Answer,
    outcome: Result<Answered, SyncError>,
    now: f64,
) -> Settlement {
    let action = matches!(answer, Answer::State | Answer::Sent { .. });
    let mut commands = Vec::new();
    let mut shown = false;
    let value = match outcome {
        Ok(Answered::State(state)) => {
            commands = syncer.action_answered(state, now);
            shown = true;
            Ok(Answered::Done)
        }
        other => other,
    };
    let gone = value
        .as_ref()
        .err()
        .is_some_and(|e| e.kind == ErrorKind::Deleted);
    match (answer, &value) {
        // A 404 to an action means the context is gone.
        (_, Err(error)) if action && gone => {
            commands.extend(syncer.context_deleted(Some(error.clone())));
        }
        (_, Err(error)) if action && error.kind == ErrorKind::Network => {
            commands.extend(syncer.action_failed(error.clone(), now));
        }
        (_, Err(error)) if error.kind == ErrorKind::Auth => {
            commands.extend(syncer.action_unauthorized(error.clone()));
        }
        (Answer::Deleted { context_id }, _)
            if (value.is_ok() || gone) && syncer.context_id() == Some(context_id.as_str()) =>
        {
            commands.extend(syncer.context_deleted(None));
        }
        _ => {}
    }
    let mut replay = false;
    if let Answer::Sent { client_message_id } = answer {
        let settled = outbox.settled(client_message_id, value.as_ref().map(|_| ()));
        replay = settled == Settled::Delivered;
        if let Err(error) = &value {
            syncer.fail_local(client_message_id, error.message.clone());
        }
    }
    Settlement {
        commands,
        shown,
        replay,
        value,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::core::api::tests::Json;
    use crate::core::options::Config;
    use crate::core::outbox::Replays;
    use crate::core::reconcile::tests::{full, message, CTX};
    use crate::core::view::{SyncPhase, ViewStatus};

    fn started() -> Syncer {
        let mut s = Syncer::new(Config::default(), Some(CTX.to_owned()), Box::new(|| 1.0));
        s.start();
        s
    }

    /// A send of `text` with the client id `id`, made online or not.
    fn sending(
        s: &mut Syncer,
        o: &mut Outbox,
        online: bool,
        text: &str,
        id: &str,
    ) -> Result<Sending, SyncError> {
        send(s, o, online, text.into(), id.into(), Timestamp::default())
    }

    fn send_now(s: &mut Syncer, o: &mut Outbox, id: &str) -> Outgoing {
        match sending(s, o, true, "hi", id) {
            Ok(Sending::Now(outgoing)) => outgoing,
            other => panic!("expected a send now: {other:?}"),
        }
    }

    /// A fresh started syncer and empty queue, settling `answer` with `error`.
    fn failed(answer: &Answer, error: SyncError) -> (Syncer, Settlement) {
        let (mut s, mut o) = (started(), Outbox::default());
        let settled = settle(&mut s, &mut o, answer, Err(error), 0.0);
        (s, settled)
    }

    fn sent(id: &str) -> Answer {
        Answer::Sent {
            client_message_id: id.into(),
        }
    }

    fn statuses(s: &Syncer) -> Vec<(Option<String>, ViewStatus)> {
        s.view()
            .messages
            .into_iter()
            .map(|m| (m.client_message_id, m.status))
            .collect()
    }

    fn queued_ids(o: &Outbox) -> Vec<&str> {
        o.entries()
            .iter()
            .map(|e| e.client_message_id.as_str())
            .collect()
    }

    #[test]
    fn a_send_is_shown_pending_recorded_and_goes_now() {
        let (mut s, mut o) = (started(), Outbox::default());
        let outgoing = send_now(&mut s, &mut o, "c1");
        assert_eq!(
            outgoing,
            Outgoing {
                context_id: CTX.into(),
                client_message_id: "c1".into(),
                text: "hi".into()
            }
        );
        assert_eq!(statuses(&s), [(Some("c1".into()), ViewStatus::Pending)]);
        assert_eq!(queued_ids(&o), ["c1"]);
    }

    #[test]
    fn a_send_needs_a_context_and_some_text() {
        let mut o = Outbox::default();
        let mut none = Syncer::new(Config::default(), None, Box::new(|| 1.0));
        let error = sending(&mut none, &mut o, true, "hi", "c1").expect_err("refused");
        assert_eq!(error.message, "no context selected");
        let mut s = started();
        let error = sending(&mut s, &mut o, true, "  ", "c1").expect_err("refused");
        assert_eq!(error.kind, ErrorKind::Invalid);
        assert!(o.entries().is_empty() && s.view().messages.is_empty());
    }

    #[test]
    fn offline_a_send_is_queued_shown_as_such_and_replayed_once_online() {
        let (mut s, mut o) = (started(), Outbox::default());
        let queued = sending(&mut s, &mut o, false, "hi", "c1");
        assert_eq!(queued, Ok(Sending::Queued));
        assert_eq!(s.view().messages[0].error.as_deref(), Some(QUEUED));
        assert_eq!(replay(&mut s, &mut o, false), None, "not while offline");
        let again = replay(&mut s, &mut o, true).expect("replayed online");
        assert_eq!(again.client_message_id, "c1");
        assert_eq!(statuses(&s), [(Some("c1".into()), ViewStatus::Pending)]);
    }

    #[test]
    fn a_new_send_waits_behind_an_older_queued_one() {
        let (mut s, mut o) = (started(), Outbox::default());
        sending(&mut s, &mut o, false, "one", "c1").expect("accepted");
        let second = sending(&mut s, &mut o, true, "two", "c2");
        assert_eq!(second, Ok(Sending::Queued));
        assert_eq!(
            replay(&mut s, &mut o, true)
                .expect("accepted")
                .client_message_id,
            "c1"
        );
    }

    #[test]
    fn a_full_queue_refuses_the_send_and_shows_nothing() {
        let (mut s, mut o) = (started(), Outbox::default());
        for n in 0..crate::core::outbox::MAX_ENTRIES {
            sending(&mut s, &mut o, false, "x", &format!("c{n}")).expect("accepted");
        }
        let shown = s.view().messages.len();
        let error = sending(&mut s, &mut o, true, "x", "last").expect_err("refused");
        assert_eq!(error.code.as_deref(), Some("queue_full"));
        assert_eq!(s.view().messages.len(), shown);
    }

    #[test]
    fn a_delivered_send_leaves_the_queue_shows_its_state_and_lets_the_next_replay_go() {
        let (mut s, mut o) = (started(), Outbox::default());
        send_now(&mut s, &mut o, "c1");
        let state = full(1, vec![message(1, "hi", Some("c1"), 1)]);
        let settled = settle(&mut s, &mut o, &sent("c1"), Ok(Answered::State(state)), 0.0);
        assert!(settled.shown && settled.replay);
        assert_eq!(settled.value, Ok(Answered::Done));
        assert!(o.entries().is_empty());
        assert_eq!(statuses(&s), [(Some("c1".into()), ViewStatus::Complete)]);
    }

    #[test]
    fn a_send_lost_on_the_network_stays_queued_fails_and_polling_backs_off() {
        let (mut s, mut o) = (started(), Outbox::default());
        send_now(&mut s, &mut o, "c1");
        let lost = SyncError::network("Failed to fetch");
        let settled = settle(&mut s, &mut o, &sent("c1"), Err(lost.clone()), 0.0);
        assert!(!settled.shown && !settled.replay);
        assert_eq!(settled.value, Err(lost));
        assert_eq!(queued_ids(&o), ["c1"]);
        assert_eq!(statuses(&s), [(Some("c1".into()), ViewStatus::Failed)]);
        assert_eq!(s.phase(), SyncPhase::Offline);
        assert!(settled.commands.contains(&Command::AbortPoll));
    }

    #[test]
    fn a_refused_send_leaves_the_queue_and_stays_failed() {
        let (mut s, mut o) = (started(), Outbox::default());
        send_now(&mut s, &mut o, "c1");
        let refused = SyncError::from_http(400, None);
        let settled = settle(&mut s, &mut o, &sent("c1"), Err(refused), 0.0);
        assert!(!settled.replay && settled.commands.is_empty());
        assert!(o.entries().is_empty());
        assert_eq!(statuses(&s), [(Some("c1".into()), ViewStatus::Failed)]);
        // Retrying queues it again, on its way.
        let again = retry(&mut s, &mut o, "c1".into()).expect("accepted");
        assert_eq!(again.text, "hi");
        assert_eq!(queued_ids(&o), ["c1"]);
        assert_eq!(statuses(&s), [(Some("c1".into()), ViewStatus::Pending)]);
        assert_eq!(
            retry(&mut s, &mut o, "nope".into())
                .expect_err("refused")
                .message,
            "no failed message with that id"
        );
    }

    #[test]
    fn an_action_refused_for_its_credentials_stops_polling_and_replays() {
        let (s, settled) = failed(&Answer::State, SyncError::from_http(401, None));
        assert!(matches!(
            settled.commands.last(),
            Some(Command::AuthFailed(_))
        ));
        assert_eq!(s.phase(), SyncPhase::Error);
        assert_eq!(s.replays(), Replays::None);
    }

    #[test]
    fn a_404_to_an_action_means_the_context_is_gone() {
        let (s, settled) = failed(&Answer::State, SyncError::from_http(404, None));
        assert!(settled.commands.contains(&Command::CancelTimer));
        assert_eq!(s.phase(), SyncPhase::Deleted);
    }

    #[test]
    fn deleting_the_current_context_stops_polling_it_and_another_changes_nothing() {
        let (mut s, mut o) = (started(), Outbox::default());
        let other = Answer::Deleted {
            context_id: "another".into(),
        };
        let settled = settle(&mut s, &mut o, &other, Ok(Answered::Done), 0.0);
        assert!(settled.commands.is_empty());
        assert_ne!(s.phase(), SyncPhase::Deleted);
        let this = Answer::Deleted {
            context_id: CTX.into(),
        };
        // Already gone (404) counts as deleted too.
        let gone = Err(SyncError::from_http(404, None));
        let settled = settle(&mut s, &mut o, &this, gone, 0.0);
        assert!(settled.value.is_err());
        assert_eq!(s.phase(), SyncPhase::Deleted);
    }

    #[test]
    fn a_network_failure_of_a_read_leaves_polling_alone() {
        let (s, settled) = failed(&Answer::List, SyncError::network("down"));
        assert!(settled.commands.is_empty());
        assert_eq!(s.phase(), SyncPhase::Syncing);
    }

    #[test]
    fn discarding_drops_a_failed_message_from_view_and_queue_and_nothing_else() {
        let (mut s, mut o) = (started(), Outbox::default());
        sending(&mut s, &mut o, false, "hi", "c1").expect("accepted");
        assert!(!discard(&mut s, &mut o, "unknown"));
        assert!(discard(&mut s, &mut o, "c1"));
        assert!(o.entries().is_empty() && s.view().messages.is_empty());
    }

    #[test]
    fn queued_sends_of_the_current_context_show_after_a_reload() {
        let (mut s, mut o) = (started(), Outbox::default());
        sending(&mut s, &mut o, false, "hi", "c1").expect("accepted");
        let mut reloaded = started();
        let restored = Outbox::restore(o.entries().to_vec());
        show_queued(&mut reloaded, &restored);
        assert_eq!(reloaded.view().messages[0].error.as_deref(), Some(QUEUED));
        let mut elsewhere = Syncer::new(Config::default(), None, Box::new(|| 1.0));
        show_queued(&mut elsewhere, &restored);
        assert!(elsewhere.view().messages.is_empty());
    }

    #[test]
    fn answers_are_read_as_their_request_expects() {
        let list = r#"{"contexts":[],"total":0,"next_cursor":null}"#;
        assert!(matches!(
            read(&Answer::List, 200, &Json(list)),
            Ok(Answered::List(_))
        ));
        assert_eq!(read(&Answer::Raw, 200, &Json("{}")), Ok(Answered::Raw));
        let deleted = Answer::Deleted {
            context_id: CTX.into(),
        };
        assert_eq!(read(&deleted, 204, &Json("null")), Ok(Answered::Done));
        let error = read(&Answer::State, 404, &Json("{}")).expect_err("refused");
        assert_eq!(error.kind, ErrorKind::Deleted);
        let wrong = read(&Answer::State, 200, &Json("{}")).expect_err("refused");
        assert_eq!(wrong.kind, ErrorKind::Invalid);
    }
}
