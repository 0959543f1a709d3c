//! The offline queue: sends that have not reached the server yet.
//!
//! Every send is recorded here before it goes out. A send the server accepted, or refused
//! for a reason retrying would not fix, leaves the queue; one lost on the network (or
//! refused with a 5xx or 429, or for its credentials: 401 or 403) stays, with its
//! `client_message_id` (also its idempotency key), and is replayed when the browser is
//! back online, or once `start()` resumes with a new token. The shell keeps the entries in
//! browser storage, so they survive a reload and a chat switch; the server stores each
//! `client_message_id` once, so a replay of a send that did land is harmless.
//!
//! Architecture Invariant: replays go one at a time, oldest first, and never while another
//! send of the queue is on its way; a replay that fails stops the replay until the next
//! trigger, so the order the user typed is the order the server sees. Where the tabs of a
//! browser elect one poller per chat, only the chat's leader replays its sends
//! ([`Replays`]), so no two tabs replay the same entry.

use chatsync_protocol::Timestamp;
use serde::{Deserialize, Serialize};

use super::error::{ErrorKind, SyncError};

/// At most this many sends wait in the queue.
pub const MAX_ENTRIES: usize = 100;
/// And at most this many bytes of text and ids, well inside browser storage quotas.
pub const MAX_BYTES: usize = 256 * 1024;

/// A send waiting for the server, as kept in browser storage (and as a tab tells the other
/// tabs on its chat of the messages it sent that the server has not shown yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    pub context_id: String,
    pub client_message_id: String,
    pub text: String,
    pub created_at: Timestamp,
    /// Why the send failed, when a tab tells the others; always none in the queue.
    #[serde(default)]
    pub failure: Option<String>,
}

impl Queued {
    fn bytes(&self) -> usize {
        self.context_id.len() + self.client_message_id.len() + self.text.len()
    }
}

/// Which queued sends a tab may replay now (`Syncer::replays` decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replays {
    /// None: another tab leads the chat and replays, or the credentials were refused and
    /// polling waits for `start()`.
    None,
    /// Every queued send: this tab polls on its own (the browser cannot elect).
    All,
    /// The sends of the chat this tab was elected to poll.
    Context(String),
}

impl Replays {
    fn covers(&self, entry: &Queued) -> bool {
        match self {
            Replays::None => false,
            Replays::All => true,
            Replays::Context(id) => *id == entry.context_id,
        }
    }
}

/// What became of a send of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The server has it; it left the queue.
    Delivered,
    /// Lost on the way or refused for now: kept for the next replay.
    Kept,
    /// Refused for good (a 4xx): it left the queue and the user must be told.
    Dropped,
}

#[derive(Debug, Default)]
pub struct Outbox {
    entries: Vec<Queued>,
    /// The sends of the queue on their way now (kept in memory only: after a reload
    /// nothing is on its way).
    sending: Vec<String>,
}

impl Outbox {
    /// The entries read back from storage, kept within the bounds (the oldest win, as they
    /// were queued first).
    pub fn restore(entries: Vec<Queued>) -> Self {
        let mut outbox = Outbox::default();
        for entry in entries {
            if outbox.push(entry).is_err() {
                break;
            }
        }
        outbox.sending.clear();
        outbox
    }

    /// What to write to storage.
    pub fn entries(&self) -> &[Queued] {
        &self.entries
    }

    /// The entries of one context, to show again as the user's pending messages.
    pub fn for_context<'a>(&'a self, context_id: &'a str) -> impl Iterator<Item = &'a Queued> {
        self.entries
            .iter()
            .filter(move |e| e.context_id == context_id)
    }

    /// Records a send about to go out; a full queue refuses it with a clear error and the
    /// send must not be made (nothing would keep it if it were lost).
    pub fn push(&mut self, entry: Queued) -> Result<(), SyncError> {
        let bytes: usize = self.entries.iter().map(Queued::bytes).sum();
        if self.entries.len() >= MAX_ENTRIES || bytes + entry.bytes() > MAX_BYTES {
            return Err(full());
        }
        self.sending.push(entry.client_message_id.clone());
        self.entries.push(entry);
        Ok(())
    }

    /// Whether a new send to `context_id` may go out at once: only when online and no
    /// older send to that chat waits for a replay, which must reach the server first.
    pub fn may_send_now(&self, online: bool, context_id: &str) -> bool {
        online
            && self
                .for_context(context_id)
                .all(|e| self.is_sending(&e.client_message_id))
    }

    /// A send of the queue goes out again (the user asked for it): it is on its way.
    pub fn resend(&mut self, client_message_id: &str) -> bool {
        let queued = self
            .entries
            .iter()
            .any(|e| e.client_message_id == client_message_id);
        if queued && !self.is_sending(client_message_id) {
            self.sending.push(client_message_id.to_owned());
        }
        queued
    }

    /// The next send to replay, if any: the oldest this tab may replay, and only when
    /// nothing of the queue is on its way.
    pub fn next_replay(&mut self, online: bool, replays: &Replays) -> Option<Queued> {
        if !online || !self.sending.is_empty() {
            return None;
        }
        let next = self.entries.iter().find(|e| replays.covers(e))?.clone();
        self.sending.push(next.client_message_id.clone());
        Some(next)
    }

    /// A send of the queue came back with `result`.
    pub fn settled(&mut self, client_message_id: &str, result: Result<(), &SyncError>) -> Settled {
        self.sending.retain(|id| id != client_message_id);
        let outcome = match result {
            Ok(()) => Settled::Delivered,
            Err(error) if retryable(error) => Settled::Kept,
            Err(_) => Settled::Dropped,
        };
        if outcome != Settled::Kept {
            self.remove(client_message_id);
        }
        outcome
    }

    /// The user gave up on a send: it is not replayed.
    pub fn discard(&mut self, client_message_id: &str) -> bool {
        self.sending.retain(|id| id != client_message_id);
        self.remove(client_message_id)
    }

    /// Forgets every queued send (the user signed out): none is replayed, here or by a
    /// later page of the same browser.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.sending.clear();
    }

    /// Another tab changed the stored queue: take its entries, keeping what is on its
    /// way from here.
    pub fn reload(&mut self, entries: Vec<Queued>) {
        let sending = std::mem::take(&mut self.sending);
        *self = Outbox::restore(entries);
        self.sending = sending
            .into_iter()
            .filter(|id| self.entries.iter().any(|e| &e.client_message_id == id))
            .collect();
    }

    fn is_sending(&self, client_message_id: &str) -> bool {
        self.sending.iter().any(|id| id == client_message_id)
    }

    fn remove(&mut self, client_message_id: &str) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|e| e.client_message_id != client_message_id);
        self.entries.len() != before
    }
}

/// Worth sending again later: the network, the server saying "not now", or credentials
/// refused (the send goes again once `start()` resumes with a new token).
fn retryable(error: &SyncError) -> bool {
    error.kind == ErrorKind::Auth || error.is_transient()
}

#[inline(never)]
fn full() -> SyncError {
    SyncError {
        code: Some("queue_full".into()),
        ..SyncError::invalid(
            "the offline queue is full (100 messages or 256 KiB): wait until the queued messages are sent, or discard some",
        )
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    const CTX: &str = "ctx-a";

    fn queued(id: &str) -> Queued {
        queued_in(CTX, id, "hello")
    }

    fn queued_in(context_id: &str, id: &str, text: &str) -> Queued {
        Queued {
            context_id: context_id.into(),
            client_message_id: id.into(),
            text: text.into(),
            created_at: Timestamp::default(),
            failure: None,
        }
    }

    /// The id of the next replay, which must exist.
    fn next(outbox: &mut Outbox) -> String {
        outbox
            .next_replay(true, &Replays::All)
            .expect("a replay")
            .client_message_id
    }

    fn ids(outbox: &Outbox) -> Vec<&str> {
        outbox
            .entries()
            .iter()
            .map(|e| e.client_message_id.as_str())
            .collect()
    }

    #[test]
    fn a_delivered_send_leaves_the_queue_and_a_lost_one_stays() {
        let mut outbox = Outbox::default();
        outbox.push(queued("a")).expect("room in the queue");
        outbox.push(queued("b")).expect("room in the queue");
        assert_eq!(outbox.settled("a", Ok(())), Settled::Delivered);
        let lost = SyncError::network("Failed to fetch");
        assert_eq!(outbox.settled("b", Err(&lost)), Settled::Kept);
        assert_eq!(ids(&outbox), ["b"]);
    }

    #[test]
    fn server_busy_is_kept_and_a_refusal_is_dropped() {
        let mut outbox = Outbox::default();
        for (id, status) in [("a", 503), ("b", 429), ("c", 422), ("d", 404)] {
            outbox.push(queued(id)).expect("room in the queue");
            outbox.settled(id, Err(&SyncError::from_http(status, None)));
        }
        assert_eq!(ids(&outbox), ["a", "b"]);
    }

    #[test]
    fn a_send_refused_for_its_credentials_stays_queued_for_the_next_token() {
        let mut outbox = Outbox::default();
        for (id, status) in [("a", 401), ("b", 403)] {
            outbox.push(queued(id)).expect("room in the queue");
            let refused = SyncError::from_http(status, None);
            assert_eq!(outbox.settled(id, Err(&refused)), Settled::Kept, "{status}");
        }
        assert_eq!(ids(&outbox), ["a", "b"]);
        assert!(
            !outbox.may_send_now(true, CTX),
            "new sends wait behind them"
        );
        assert_eq!(next(&mut outbox), "a", "replayed, oldest first");
    }

    #[test]
    fn a_tab_replays_only_the_sends_it_may() {
        let mut outbox =
            Outbox::restore(vec![queued_in("one", "a", "x"), queued_in("two", "b", "y")]);
        assert_eq!(outbox.next_replay(true, &Replays::None), None, "a follower");
        let two = Replays::Context("two".into());
        let led = outbox.next_replay(true, &two).expect("the led chat's send");
        assert_eq!(led.client_message_id, "b");
        outbox.settled("b", Ok(()));
        assert_eq!(outbox.next_replay(true, &two), None, "not another chat's");
        assert_eq!(
            next(&mut outbox),
            "a",
            "a tab polling alone replays them all"
        );
    }

    #[test]
    fn replays_go_oldest_first_one_at_a_time_and_only_online() {
        let mut outbox = Outbox::restore(vec![queued("a"), queued("b")]);
        assert_eq!(outbox.next_replay(false, &Replays::All), None);
        let first = outbox.next_replay(true, &Replays::All).expect("a replay");
        assert_eq!(first.client_message_id, "a");
        assert_eq!(
            outbox.next_replay(true, &Replays::All),
            None,
            "one replay at a time"
        );
        outbox.settled("a", Ok(()));
        assert_eq!(next(&mut outbox), "b");
    }

    #[test]
    fn a_failed_replay_stops_the_replay_until_the_next_trigger() {
        let mut outbox = Outbox::restore(vec![queued("a"), queued("b")]);
        outbox.next_replay(true, &Replays::All);
        outbox.settled("a", Err(&SyncError::network("down")));
        // The next trigger (back online) starts again from the oldest, so "b" never
        // overtakes "a".
        assert_eq!(next(&mut outbox), "a");
    }

    #[test]
    fn a_refused_replay_is_dropped_and_the_next_one_follows() {
        let mut outbox = Outbox::restore(vec![queued("a"), queued("b")]);
        outbox.next_replay(true, &Replays::All);
        let refused = SyncError::from_http(400, None);
        assert_eq!(outbox.settled("a", Err(&refused)), Settled::Dropped);
        assert_eq!(next(&mut outbox), "b");
    }

    #[test]
    fn new_sends_wait_behind_older_queued_ones_and_while_offline() {
        let mut outbox = Outbox::default();
        assert!(outbox.may_send_now(true, CTX));
        assert!(!outbox.may_send_now(false, CTX));
        outbox.push(queued("a")).expect("room in the queue");
        assert!(
            outbox.may_send_now(true, CTX),
            "a send on its way does not hold others"
        );
        outbox.settled("a", Err(&SyncError::network("down")));
        assert!(
            !outbox.may_send_now(true, CTX),
            "the queued one must go first"
        );
        assert!(
            outbox.may_send_now(true, "another chat"),
            "a send to another chat need not wait"
        );
    }

    #[test]
    fn nothing_is_on_its_way_after_a_reload() {
        let mut before = Outbox::default();
        before.push(queued("a")).expect("room in the queue");
        let mut after = Outbox::restore(before.entries().to_vec());
        assert_eq!(next(&mut after), "a");
    }

    #[test]
    fn the_queue_is_bounded_with_a_clear_error() {
        let mut outbox = Outbox::default();
        for i in 0..MAX_ENTRIES {
            outbox
                .push(queued(&i.to_string()))
                .expect("room in the queue");
        }
        let error = outbox
            .push(queued("one-more"))
            .expect_err("the queue is full");
        assert_eq!(error.code.as_deref(), Some("queue_full"));
        assert_eq!(outbox.entries().len(), MAX_ENTRIES);

        let mut outbox = Outbox::default();
        let big = "x".repeat(MAX_BYTES / 2);
        outbox
            .push(queued_in(CTX, "a", &big))
            .expect("room in the queue");
        assert!(outbox.push(queued_in(CTX, "b", &big)).is_err());
    }

    #[test]
    fn restoring_too_much_keeps_the_oldest_within_bounds() {
        let stored: Vec<_> = (0..MAX_ENTRIES + 5)
            .map(|i| queued(&i.to_string()))
            .collect();
        let outbox = Outbox::restore(stored);
        assert_eq!(outbox.entries().len(), MAX_ENTRIES);
        assert_eq!(outbox.entries()[0].client_message_id, "0");
    }

    #[test]
    fn entries_of_other_contexts_stay_queued_and_are_listed_per_context() {
        let mut outbox = Outbox::default();
        outbox
            .push(queued_in("one", "a", "x"))
            .expect("room in the queue");
        outbox
            .push(queued_in("two", "b", "y"))
            .expect("room in the queue");
        let two: Vec<_> = outbox.for_context("two").map(|e| e.text.as_str()).collect();
        assert_eq!(two, ["y"]);
    }

    #[test]
    fn discard_and_resend() {
        let mut outbox = Outbox::default();
        outbox.push(queued("a")).expect("room in the queue");
        outbox.settled("a", Err(&SyncError::network("down")));
        assert!(outbox.resend("a"));
        assert_eq!(
            outbox.next_replay(true, &Replays::All),
            None,
            "it is on its way"
        );
        assert!(outbox.discard("a"));
        assert!(!outbox.resend("a"));
        assert!(outbox.entries().is_empty());
    }

    #[test]
    fn a_reload_from_another_tab_keeps_what_is_on_its_way_here() {
        let mut outbox = Outbox::default();
        outbox.push(queued("a")).expect("room in the queue");
        outbox.reload(vec![queued("a"), queued("b")]);
        assert_eq!(
            outbox.next_replay(true, &Replays::All),
            None,
            "a is still on its way"
        );
        outbox.settled("a", Ok(()));
        assert_eq!(next(&mut outbox), "b");
    }

    #[test]
    fn clearing_forgets_every_send_and_replays_nothing() {
        let mut outbox = Outbox::default();
        outbox.push(queued("a")).expect("room in the queue");
        outbox.push(queued("b")).expect("room in the queue");
        outbox.settled("a", Err(&SyncError::network("down")));
        outbox.clear();
        assert!(outbox.entries().is_empty());
        assert_eq!(outbox.next_replay(true, &Replays::All), None);
        assert!(outbox.may_send_now(true, CTX));
    }
}
