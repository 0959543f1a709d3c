//! The polling loop as a pure state machine.
//!
//! The browser shell feeds it events (start, a timer fired, a poll answered, the tab was
//! hidden, the browser went offline) and carries out the commands it returns (fetch, abort
//! the held poll, set or cancel the one timer, report an auth error). Keeping time, I/O and
//! randomness outside lets every polling rule be tested natively.
//!
//! Architecture Invariant: at most one poll is in flight, and only the answer to the poll
//! this machine is waiting for is applied; everything else is late and dropped.

use chatsync_protocol::{ChatState, Timestamp};

use super::backoff::Backoff;
use super::error::{ErrorKind, SyncError};
use super::options::{Config, Mode};
use super::outbox::{Queued, Replays};
use super::reconcile::{Applied, Chat};
use super::view::{ChatView, SyncPhase};

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Fetch(PollRequest),
    /// Abort the poll in flight (a held long-poll): its answer is no longer wanted.
    AbortPoll,
    /// (Re)arm the single timer; it replaces any timer already set.
    SetTimer {
        delay_ms: u32,
    },
    CancelTimer,
    /// The server refused the credentials; polling stopped until `start()`.
    AuthFailed(SyncError),
}

/// One `GET /state`. With `since`, the poll asks for a delta and sends the matching ETag;
/// with `wait_ms` too, the server holds it until something changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRequest {
    pub ticket: u64,
    pub context_id: String,
    pub since: Option<u64>,
    pub wait_ms: Option<u32>,
}

/// How a poll ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    State(ChatState),
    NotModified,
    /// A `Deleted` error (404) stops polling, so do auth errors and other 4xx; transient
    /// ones (network, 408, 429, 5xx) back off.
    Failed(SyncError),
}

/// A number in `[0, 1)` for the full jitter of error backoff; `Math.random` in the
/// browser, a fixed sequence in tests.
pub type Jitter = Box<dyn FnMut() -> f64>;

pub struct Syncer {
    chat: Chat,
    backoff: Backoff,
    config: Config,
    jitter: Jitter,
    running: bool,
    hidden: bool,
    online: bool,
    /// The tabs of this browser elect one poller per chat (the browser can); then this one
    /// polls only while it leads, and otherwise shows the state the leader hands over.
    elect: bool,
    /// The context this tab was elected to poll.
    leading: Option<String>,
    deleted: bool,
    /// A poll (or an action's answer) has succeeded for this context.
    loaded: bool,
    /// The next poll asks for everything, not a delta.
    needs_full: bool,
    last_error: Option<SyncError>,
    in_flight: Option<u64>,
    last_ticket: u64,
    next_poll_at: Option<f64>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("context_id", &self.context_id())
            .field("phase", &self.phase())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl Syncer {
    pub fn new(config: Config, context_id: Option<String>, jitter: Jitter) -> Self {
        Syncer {
            chat: Chat::new(context_id),
            backoff: Backoff::new(config),
            config,
            jitter,
            running: false,
            hidden: false,
            online: true,
            elect: false,
            leading: None,
            deleted: false,
            loaded: false,
            needs_full: false,
            last_error: None,
            in_flight: None,
            last_ticket: 0,
            next_poll_at: None,
        }
    }

    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    pub fn context_id(&self) -> Option<&str> {
        self.chat.context_id()
    }

    /// Starts polling; after an auth error (or another error retrying would not fix), this
    /// is how polling resumes, for instance once a new token is at hand.
    pub fn start(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        if !self.running {
            self.running = true;
            self.backoff.reset();
            self.poll_now(&mut out);
        }
        out
    }

    /// Stops polling. A poll still in flight is aborted, and its answer ignored.
    pub fn stop(&mut self) -> Vec<Command> {
        self.running = false;
        let mut out = self.abort_poll();
        out.extend(self.cancel_timer());
        out
    }

    /// Switches to another context (or none), dropping everything known about the old one.
    /// Setting the current context again changes nothing, so a UI may call this on every
    /// render.
    pub fn set_context(&mut self, context_id: Option<String>) -> Vec<Command> {
        if context_id.as_deref() == self.chat.context_id() {
            return Vec::new();
        }
        self.chat = Chat::new(context_id);
        self.backoff = Backoff::new(self.config);
        self.deleted = false;
        self.loaded = false;
        self.needs_full = false;
        self.last_error = None;
        let mut out = self.abort_poll();
        out.extend(self.cancel_timer());
        self.poll_now(&mut out);
        out
    }

    /// A hidden tab stops at once (a held poll is aborted) and sends nothing; a visible one
    /// polls at once, at the base rate.
    pub fn set_hidden(&mut self, hidden: bool) -> Vec<Command> {
        if self.hidden == hidden {
            return Vec::new();
        }
        self.hidden = hidden;
        self.pause_or_resume()
    }

    /// The browser's `offline` and `online` events: pause at once, resume at once.
    pub fn set_online(&mut self, online: bool) -> Vec<Command> {
        if self.online == online {
            return Vec::new();
        }
        self.online = online;
        self.pause_or_resume()
    }

    /// The browser can elect one poller per chat: from now on this tab polls only once
    /// elected.
    pub fn enable_election(&mut self) -> Vec<Command> {
        self.elect = true;
        self.pause_or_resume()
    }

    /// The chat this tab should stand for election on, asked after every event: one it
    /// would poll (running, visible, not deleted). A tab that no longer stands stops
    /// leading, so it must win the election again before it polls.
    pub fn election(&mut self) -> Option<String> {
        let wanted = self
            .wants_to_poll()
            .then(|| self.chat.context_id().map(str::to_owned))
            .flatten();
        if self.leading != wanted {
            self.leading = None;
        }
        wanted.filter(|_| self.elect)
    }

    /// This tab won the election for `context_id` (the leader before it closed, or there
    /// was none): it polls at once, from the version it was handed.
    pub fn lead(&mut self, context_id: &str) -> Vec<Command> {
        if self.election().as_deref() != Some(context_id) && self.elect {
            return Vec::new();
        }
        self.leading = Some(context_id.to_owned());
        self.pause_or_resume()
    }

    /// A state the leader tab handed over (a poll's or an action's answer, whole or a
    /// delta): shown like a poll's answer. True when it did not fit what this tab holds
    /// (a delta on a version it missed): the leader must hand over a whole state.
    pub fn shared_state(&mut self, state: ChatState) -> bool {
        match self.chat.apply(state) {
            Applied::Ignored => false,
            Applied::OutOfStep => true,
            Applied::Changed | Applied::Unchanged => {
                self.succeeded();
                false
            }
        }
    }

    /// Which queued sends this tab may replay now. Where the tabs elect a poller, only the
    /// chat's leader replays, and only that chat's sends, so no two tabs replay the same
    /// one; a tab polling on its own replays them all. None while polling stopped on
    /// refused credentials: they go again once `start()` resumes (with a new token).
    pub fn replays(&self) -> Replays {
        let refused = self
            .last_error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Auth);
        match &self.leading {
            _ if refused && !self.running => Replays::None,
            _ if !self.elect => Replays::All,
            Some(id) if !self.follows() => Replays::Context(id.clone()),
            _ => Replays::None,
        }
    }

    /// The window got focus: the user is looking, so a poll waiting on its timer goes now.
    pub fn focused(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        self.poll_now(&mut out);
        out
    }

    /// Forgets the version held and asks for the whole state now.
    pub fn refetch(&mut self) -> Vec<Command> {
        self.needs_full = true;
        let mut out = self.abort_poll();
        self.poll_now(&mut out);
        out
    }

    pub fn timer_fired(&mut self) -> Vec<Command> {
        self.next_poll_at = None;
        let mut out = Vec::new();
        self.poll_now(&mut out);
        out
    }

    pub fn poll_finished(&mut self, ticket: u64, outcome: PollOutcome, now: f64) -> Vec<Command> {
        if self.in_flight != Some(ticket) {
            return Vec::new();
        }
        self.in_flight = None;
        match outcome {
            PollOutcome::State(state) => {
                let full = !state.delta;
                match self.chat.apply(state) {
                    Applied::Changed => self.backoff.changed(),
                    Applied::Unchanged | Applied::Ignored => self.backoff.unchanged(),
                    Applied::OutOfStep => {
                        self.needs_full = true;
                        self.backoff.changed();
                    }
                }
                if full {
                    self.needs_full = false;
                }
                self.succeeded();
            }
            PollOutcome::NotModified => {
                self.backoff.unchanged();
                self.succeeded();
            }
            PollOutcome::Failed(error) if error.kind == ErrorKind::Deleted => {
                self.deleted = true;
                self.last_error = Some(error);
            }
            PollOutcome::Failed(error) if !error.is_transient() => {
                // Asking again would get the same answer: stop, say why, and wait for
                // `start()` (after a new token, for an auth error).
                self.running = false;
                let mut out = self.cancel_timer();
                if error.kind == ErrorKind::Auth {
                    out.push(Command::AuthFailed(error.clone()));
                }
                self.last_error = Some(error);
                return out;
            }
            PollOutcome::Failed(error) => {
                self.backoff.failed();
                self.last_error = Some(error);
            }
        }
        self.schedule(now)
    }

    /// An action answered with the context's state: show it and poll briskly for a while,
    /// since the turn it started is about to change things.
    pub fn action_answered(&mut self, state: ChatState, now: f64) -> Vec<Command> {
        if self.chat.apply(state) == Applied::OutOfStep {
            self.needs_full = true;
        }
        self.succeeded();
        self.backoff.burst();
        if self.in_flight.is_some() {
            // The poll in flight schedules the next one when it lands; a held one answers
            // at once, since the version it names is now behind.
            return Vec::new();
        }
        self.schedule(now)
    }

    /// An action failed on the network: the poll held open is likely just as cut off and
    /// would only notice when its own deadline passes, so it is dropped and polling backs
    /// off as after a failed poll.
    pub fn action_failed(&mut self, error: SyncError, now: f64) -> Vec<Command> {
        if error.kind != ErrorKind::Network || !self.active() {
            return Vec::new();
        }
        let mut out = self.abort_poll();
        self.backoff.failed();
        self.last_error = Some(error);
        out.extend(self.schedule(now));
        out
    }

    /// An action was refused for its credentials: the same stop as a poll's auth error.
    pub fn action_unauthorized(&mut self, error: SyncError) -> Vec<Command> {
        self.running = false;
        let mut out = self.abort_poll();
        out.extend(self.cancel_timer());
        out.push(Command::AuthFailed(error.clone()));
        self.last_error = Some(error);
        out
    }

    /// The context is gone (deleted here, or an action answered 404): stop polling it.
    pub fn context_deleted(&mut self, error: Option<SyncError>) -> Vec<Command> {
        self.deleted = true;
        self.last_error = error;
        let mut out = self.abort_poll();
        out.extend(self.cancel_timer());
        out
    }

    /// Shows a message the user just sent as pending.
    pub fn add_local(&mut self, client_message_id: String, text: String, created_at: Timestamp) {
        self.chat.add_local(client_message_id, text, created_at);
    }

    /// Marks a send failed; false when the message is no longer local.
    pub fn fail_local(&mut self, client_message_id: &str, reason: String) -> bool {
        self.chat.fail_local(client_message_id, reason)
    }

    /// Makes a failed message pending again and gives back its text to re-send.
    pub fn resend_local(&mut self, client_message_id: &str) -> Option<String> {
        self.chat.resend_local(client_message_id)
    }

    /// Shows the queued sends of the current context (after a reload or a chat switch) as
    /// the user's messages, failed with `reason` until a replay sends them.
    pub fn show_queued<'a>(&mut self, queued: impl Iterator<Item = &'a Queued>, reason: &str) {
        for q in queued {
            if !self.chat.has_local(&q.client_message_id) {
                let id = q.client_message_id.clone();
                self.chat
                    .add_local(id.clone(), q.text.clone(), Timestamp::clone(&q.created_at));
                self.chat.fail_local(&id, reason.to_owned());
            }
        }
    }

    /// Another tab on this chat told what it sent that the server has not shown yet; true
    /// when that changed what is shown of other tabs.
    pub fn others_sent(&mut self, tab: &str, sent: Vec<Queued>) -> bool {
        self.chat.others_sent(tab, sent)
    }

    pub fn forget_other_tabs(&mut self) {
        self.chat.forget_other_tabs();
    }

    /// Drops a failed message.
    pub fn discard_local(&mut self, client_message_id: &str) -> bool {
        self.chat.discard_local(client_message_id)
    }

    pub fn phase(&self) -> SyncPhase {
        if self.deleted {
            SyncPhase::Deleted
        } else if !self.running && self.last_error.as_ref().is_some_and(|e| !e.is_transient()) {
            SyncPhase::Error
        } else if !self.running || self.chat.context_id().is_none() {
            SyncPhase::Stopped
        } else if self.follows() && !self.hidden {
            if self.loaded && self.last_error.is_none() {
                SyncPhase::Synced
            } else {
                SyncPhase::Syncing
            }
        } else if self.hidden {
            SyncPhase::Paused
        } else if !self.online || self.last_error.is_some() {
            SyncPhase::Offline
        } else if self.loaded {
            SyncPhase::Synced
        } else {
            SyncPhase::Syncing
        }
    }

    pub fn view(&self) -> ChatView {
        ChatView {
            context_id: self.chat.context_id().map(str::to_owned),
            messages: self.chat.messages(),
            status: self.chat.status(),
            state: self.chat.state(),
            error: self.chat.error(),
            version: self.chat.version(),
            pending_tool_calls: self.chat.pending_tool_calls(),
            poll_interval_ms: self.backoff.interval_ms(),
            paused: self.hidden,
            sync: self.phase(),
            last_error: self.last_error.clone(),
            next_poll_at: self.next_poll_at,
        }
    }

    /// Another tab polls this chat, or none does yet while the election runs.
    fn follows(&self) -> bool {
        self.elect && self.leading.as_deref() != self.chat.context_id()
    }

    /// Whether this chat would poll if no other tab did: it is running, visible and
    /// not deleted. Such a tab takes part in electing the one tab that polls.
    pub fn wants_to_poll(&self) -> bool {
        self.running && !self.hidden && !self.deleted && self.chat.context_id().is_some()
    }

    fn active(&self) -> bool {
        self.running
            && !self.follows()
            && !self.hidden
            && self.online
            && !self.deleted
            && self.chat.context_id().is_some()
    }

    fn pause_or_resume(&mut self) -> Vec<Command> {
        if !self.active() {
            let mut out = self.abort_poll();
            out.extend(self.cancel_timer());
            return out;
        }
        self.backoff.reset();
        let mut out = Vec::new();
        self.poll_now(&mut out);
        out
    }

    fn succeeded(&mut self) {
        self.loaded = true;
        self.last_error = None;
    }

    fn poll_now(&mut self, out: &mut Vec<Command>) {
        if !self.active() || self.in_flight.is_some() {
            return;
        }
        let Some(context_id) = self.chat.context_id().map(str::to_owned) else {
            return;
        };
        if self.next_poll_at.take().is_some() {
            out.push(Command::CancelTimer);
        }
        self.last_ticket += 1;
        self.in_flight = Some(self.last_ticket);
        let since = (self.chat.has_server_state() && !self.needs_full).then(|| self.chat.version());
        // Only a poll that names a version can be held: without one the server answers at
        // once anyway.
        let wait_ms =
            (self.config.mode == Mode::LongPoll && since.is_some()).then_some(self.config.wait_ms);
        out.push(Command::Fetch(PollRequest {
            ticket: self.last_ticket,
            context_id,
            since,
            wait_ms,
        }));
    }

    /// After an answer: in long-poll mode the next poll goes at once (the server holds
    /// it); otherwise, or after an error, the timer waits. Error delays use full jitter
    /// (a random share of the backoff interval, so failing clients spread out) and never
    /// undercut the server's `Retry-After`.
    fn schedule(&mut self, now: f64) -> Vec<Command> {
        if !self.active() {
            self.next_poll_at = None;
            return Vec::new();
        }
        let retry_after = self.last_error.as_ref().map(|e| e.retry_after_ms);
        let delay_ms = match retry_after {
            None if self.config.mode == Mode::LongPoll => {
                let mut out = Vec::new();
                self.poll_now(&mut out);
                return out;
            }
            None => self.backoff.interval_ms(),
            Some(retry_after) => {
                let share = (self.jitter)().clamp(0.0, 1.0);
                // A share of a u32 interval, rounded: it fits a u32.
                let jittered = (f64::from(self.backoff.interval_ms()) * share).round() as u32;
                jittered.max(retry_after.unwrap_or(0))
            }
        };
        self.next_poll_at = Some(now + f64::from(delay_ms));
        vec![Command::SetTimer { delay_ms }]
    }

    fn abort_poll(&mut self) -> Vec<Command> {
        match self.in_flight.take() {
            Some(_) => vec![Command::AbortPoll],
            None => Vec::new(),
        }
    }

    fn cancel_timer(&mut self) -> Vec<Command> {
        self.next_poll_at = None;
        vec![Command::CancelTimer]
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::core::reconcile::tests::{full, message, state, CTX};

    /// Interval mode, with "jitter" that always picks the whole interval, so the delays
    /// are the backoff schedule itself.
    fn started() -> (Syncer, u64) {
        started_with(
            Config {
                mode: Mode::Interval,
                ..Config::default()
            },
            vec![1.0],
        )
    }

    /// Started with `config`; the jitter source repeats `shares` in turn.
    fn started_with(config: Config, shares: Vec<f64>) -> (Syncer, u64) {
        let mut next = shares.into_iter().cycle();
        let jitter: Jitter = Box::new(move || next.next().unwrap_or(1.0));
        let mut s = Syncer::new(config, Some(CTX.to_owned()), jitter);
        let ticket = fetched(&s.start()).ticket;
        (s, ticket)
    }

    fn long_polling() -> (Syncer, u64) {
        started_with(Config::default(), vec![1.0])
    }

    fn http_error(status: u16, retry_after: Option<u32>) -> PollOutcome {
        PollOutcome::Failed(SyncError {
            retry_after_ms: retry_after,
            ..SyncError::from_http(status, None)
        })
    }

    /// The single fetch among `commands`.
    fn fetched(commands: &[Command]) -> PollRequest {
        let fetches: Vec<_> = commands
            .iter()
            .filter_map(|c| match c {
                Command::Fetch(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(fetches.len(), 1, "expected one fetch in {commands:?}");
        fetches[0].clone()
    }

    fn no_fetch(commands: &[Command]) -> bool {
        !commands.iter().any(|c| matches!(c, Command::Fetch(_)))
    }

    fn timer(delay_ms: u32) -> Vec<Command> {
        vec![Command::SetTimer { delay_ms }]
    }

    #[test]
    fn polls_full_first_then_deltas_on_the_timer() {
        let (mut s, t1) = started();
        assert_eq!(s.phase(), SyncPhase::Syncing);
        let answered = s.poll_finished(t1, PollOutcome::State(full(3, Vec::new())), 0.0);
        assert_eq!(answered, timer(1000));
        assert_eq!(s.phase(), SyncPhase::Synced);
        assert_eq!(s.view().next_poll_at, Some(1000.0));

        let next = fetched(&s.timer_fired());
        assert_eq!(next.since, Some(3));
        assert_eq!(s.view().next_poll_at, None);
    }

    #[test]
    fn only_one_poll_is_ever_in_flight() {
        let (mut s, _) = started();
        assert!(no_fetch(&s.timer_fired()));
        assert!(no_fetch(&s.start()));
        assert!(no_fetch(&s.focused()));
        assert!(no_fetch(&s.set_online(true)));
    }

    #[test]
    fn quiet_polls_back_off_and_a_change_resets() {
        let (mut s, mut ticket) = started();
        let mut delays = Vec::new();
        for outcome in [
            PollOutcome::State(full(1, Vec::new())),
            PollOutcome::NotModified,
            PollOutcome::NotModified,
            PollOutcome::NotModified,
            PollOutcome::NotModified,
            PollOutcome::State(full(2, vec![message(1, "a", None, 2)])),
        ] {
            s.poll_finished(ticket, outcome, 0.0);
            delays.push(s.view().poll_interval_ms);
            ticket = fetched(&s.timer_fired()).ticket;
        }
        assert_eq!(delays, [1000, 1000, 1000, 1500, 2250, 1000]);
    }

    #[test]
    fn stop_cancels_the_timer_and_ignores_the_late_answer() {
        let (mut s, ticket) = started();
        assert_eq!(s.stop(), [Command::AbortPoll, Command::CancelTimer]);
        let late = s.poll_finished(ticket, PollOutcome::State(full(4, Vec::new())), 0.0);
        assert!(late.is_empty());
        assert_eq!(s.view().version, 0, "the late answer was not applied");
        assert_eq!(s.phase(), SyncPhase::Stopped);
    }

    #[test]
    fn a_hidden_tab_stops_at_once_and_resumes_at_the_base_rate() {
        let (mut s, ticket) = started();
        s.poll_finished(ticket, PollOutcome::Failed(SyncError::network("x")), 0.0);
        assert!(s.view().poll_interval_ms > 1000);

        assert_eq!(s.set_hidden(true), [Command::CancelTimer]);
        assert_eq!(s.phase(), SyncPhase::Paused);
        assert!(s.view().paused);
        assert!(
            no_fetch(&s.timer_fired()),
            "a timer that slipped through does nothing"
        );

        let resumed = s.set_hidden(false);
        fetched(&resumed);
        assert_eq!(s.view().poll_interval_ms, 1000);
    }

    #[test]
    fn an_answer_landing_after_the_tab_hid_was_aborted_and_is_dropped() {
        let (mut s, ticket) = started();
        s.set_hidden(true);
        let answered = s.poll_finished(ticket, PollOutcome::State(full(1, Vec::new())), 0.0);
        assert!(answered.is_empty());
        assert_eq!(s.view().version, 0);
        assert_eq!(fetched(&s.set_hidden(false)).since, None);
    }

    #[test]
    fn a_404_means_deleted_and_stops_polling() {
        let (mut s, ticket) = started();
        let after = s.poll_finished(
            ticket,
            PollOutcome::Failed(SyncError::from_http(404, None)),
            0.0,
        );
        assert!(after.is_empty());
        assert_eq!(s.phase(), SyncPhase::Deleted);
        assert!(no_fetch(&s.timer_fired()));
        assert!(no_fetch(&s.set_hidden(true)));
        assert!(no_fetch(&s.set_hidden(false)));
    }

    #[test]
    fn errors_show_offline_and_back_off_until_a_poll_succeeds() {
        let (mut s, ticket) = started();
        let after = s.poll_finished(ticket, PollOutcome::Failed(SyncError::network("down")), 0.0);
        assert_eq!(after, timer(1500));
        assert_eq!(s.phase(), SyncPhase::Offline);
        assert_eq!(s.view().last_error.map(|e| e.message), Some("down".into()));

        let ticket = fetched(&s.timer_fired()).ticket;
        s.poll_finished(ticket, PollOutcome::State(full(1, Vec::new())), 0.0);
        assert_eq!(s.phase(), SyncPhase::Synced);
        assert_eq!(s.view().last_error, None);
    }

    #[test]
    fn an_action_answer_is_shown_and_opens_a_burst() {
        let (mut s, ticket) = started();
        s.poll_finished(ticket, PollOutcome::State(full(1, Vec::new())), 0.0);
        for _ in 0..4 {
            let t = fetched(&s.timer_fired()).ticket;
            s.poll_finished(t, PollOutcome::NotModified, 0.0);
        }
        assert!(s.view().poll_interval_ms > 1000);

        let rescheduled = s.action_answered(full(2, vec![message(1, "hi", Some("c1"), 2)]), 0.0);
        assert_eq!(rescheduled, timer(1000));
        assert_eq!(s.view().messages.len(), 1);
    }

    #[test]
    fn a_delta_out_of_step_makes_the_next_poll_a_full_one() {
        let (mut s, ticket) = started();
        s.poll_finished(ticket, PollOutcome::State(full(1, Vec::new())), 0.0);
        let t = fetched(&s.timer_fired()).ticket;
        s.poll_finished(t, PollOutcome::State(state(3, Vec::new(), true, 2)), 0.0);
        assert_eq!(fetched(&s.timer_fired()).since, None);
    }

    #[test]
    fn switching_context_drops_the_old_one_and_its_answers() {
        let (mut s, old) = started();
        let other = "00000000-0000-0000-0000-0000000000aa";
        let commands = s.set_context(Some(other.to_owned()));
        assert_eq!(fetched(&commands).context_id, other);
        assert!(s
            .poll_finished(old, PollOutcome::State(full(9, Vec::new())), 0.0)
            .is_empty());
        assert_eq!(s.view().version, 0);

        assert!(no_fetch(&s.set_context(None)));
        assert_eq!(s.phase(), SyncPhase::Stopped);
    }

    #[test]
    fn setting_the_same_context_again_keeps_everything() {
        let (mut s, ticket) = started();
        s.poll_finished(ticket, PollOutcome::State(full(2, Vec::new())), 0.0);
        s.add_local("c1".into(), "hi".into(), Default::default());
        assert!(s.set_context(Some(CTX.to_owned())).is_empty());
        assert_eq!(s.view().version, 2);
        assert_eq!(s.view().messages.len(), 1);
    }

    #[test]
    fn deleting_the_context_stops_polling_it() {
        let (mut s, ticket) = started();
        assert_eq!(
            s.context_deleted(None),
            [Command::AbortPoll, Command::CancelTimer]
        );
        assert!(s
            .poll_finished(ticket, PollOutcome::NotModified, 0.0)
            .is_empty());
        assert_eq!(s.phase(), SyncPhase::Deleted);
    }

    #[test]
    fn long_polls_name_the_version_held_and_follow_each_other_at_once() {
        let (mut s, first) = long_polling();
        let after_full = s.poll_finished(first, PollOutcome::State(full(3, Vec::new())), 0.0);
        let held = fetched(&after_full);
        assert_eq!((held.since, held.wait_ms), (Some(3), Some(25_000)));
        let after_quiet = s.poll_finished(held.ticket, PollOutcome::NotModified, 0.0);
        assert_eq!(fetched(&after_quiet).since, Some(3));
        assert_eq!(s.view().next_poll_at, None, "no timer between long polls");
    }

    #[test]
    fn the_first_poll_is_never_held() {
        let mut s = Syncer::new(Config::default(), Some(CTX.to_owned()), Box::new(|| 1.0));
        let first = fetched(&s.start());
        assert_eq!((first.since, first.wait_ms), (None, None));
    }

    #[test]
    fn hiding_the_tab_aborts_the_held_poll_and_sends_nothing_until_visible() {
        let (mut s, first) = long_polling();
        let held = fetched(&s.poll_finished(first, PollOutcome::State(full(1, Vec::new())), 0.0));
        assert_eq!(
            s.set_hidden(true),
            [Command::AbortPoll, Command::CancelTimer]
        );
        assert!(s
            .poll_finished(held.ticket, PollOutcome::NotModified, 0.0)
            .is_empty());
        assert!(no_fetch(&s.timer_fired()));
        assert!(no_fetch(&s.focused()));
        assert_eq!(fetched(&s.set_hidden(false)).since, Some(1));
    }

    #[test]
    fn an_auth_error_stops_polling_reports_it_and_start_resumes() {
        let (mut s, first) = long_polling();
        let after = s.poll_finished(first, http_error(401, None), 0.0);
        let Some(Command::AuthFailed(error)) = after.last() else {
            panic!("expected the auth error to be reported: {after:?}");
        };
        assert_eq!(error.kind, ErrorKind::Auth);
        assert!(no_fetch(&after));
        assert_eq!(s.phase(), SyncPhase::Error);
        assert_eq!(s.view().last_error.map(|e| e.kind), Some(ErrorKind::Auth));
        assert!(no_fetch(&s.timer_fired()));
        assert!(no_fetch(&s.focused()));
        assert!(no_fetch(&s.set_online(false)));
        assert!(no_fetch(&s.set_online(true)));

        let again = fetched(&s.start());
        s.poll_finished(again.ticket, PollOutcome::State(full(1, Vec::new())), 0.0);
        assert_eq!(s.phase(), SyncPhase::Synced);
    }

    #[test]
    fn a_403_is_an_auth_error_too_and_an_action_refused_stops_polling() {
        let (mut s, first) = started();
        let after = s.poll_finished(first, http_error(403, None), 0.0);
        assert!(matches!(after.last(), Some(Command::AuthFailed(_))));

        let (mut s, _) = long_polling();
        let stopped = s.action_unauthorized(SyncError::from_http(401, None));
        assert_eq!(stopped[0], Command::AbortPoll);
        assert!(matches!(stopped.last(), Some(Command::AuthFailed(_))));
        assert_eq!(s.phase(), SyncPhase::Error);
    }

    #[test]
    fn other_client_errors_are_reported_and_not_retried() {
        for status in [400, 409, 422] {
            let (mut s, first) = started();
            let after = s.poll_finished(first, http_error(status, None), 0.0);
            assert_eq!(after, [Command::CancelTimer], "{status}");
            assert_eq!(s.phase(), SyncPhase::Error);
            assert_eq!(s.view().last_error.and_then(|e| e.status), Some(status));
            assert!(no_fetch(&s.timer_fired()));
        }
    }

    #[test]
    fn transient_errors_back_off_with_full_jitter_up_to_the_cap() {
        let (mut s, mut ticket) = started_with(Config::default(), vec![0.5, 0.0, 1.0]);
        let mut delays = Vec::new();
        for status in [500, 503, 429, 502, 500, 500, 500] {
            let after = s.poll_finished(ticket, http_error(status, None), 0.0);
            let [Command::SetTimer { delay_ms }] = after[..] else {
                panic!("expected a timer after {status}: {after:?}");
            };
            delays.push(delay_ms);
            assert_eq!(s.phase(), SyncPhase::Offline);
            ticket = fetched(&s.timer_fired()).ticket;
        }
        // Intervals 1500, 2250, 3375, 5000 (the cap), ... times the shares 0.5, 0, 1, ...
        assert_eq!(delays, [750, 0, 3375, 2500, 0, 5000, 2500]);
        // A network error is transient too; a success ends the long-poll pause.
        let after = s.poll_finished(ticket, PollOutcome::Failed(SyncError::network("x")), 0.0);
        ticket = fetched(&[after, s.timer_fired()].concat()).ticket;
        let resumed = s.poll_finished(ticket, PollOutcome::State(full(1, Vec::new())), 0.0);
        assert_eq!(fetched(&resumed).wait_ms, Some(25_000));
    }

    #[test]
    fn retry_after_is_honoured_even_past_the_jittered_delay() {
        let (mut s, ticket) = started_with(Config::default(), vec![0.1]);
        let after = s.poll_finished(ticket, http_error(429, Some(4000)), 10.0);
        assert_eq!(after, [Command::SetTimer { delay_ms: 4000 }]);
        assert_eq!(s.view().next_poll_at, Some(4010.0));
        assert_eq!(
            s.view().last_error.and_then(|e| e.retry_after_ms),
            Some(4000)
        );
    }

    #[test]
    fn offline_pauses_at_once_and_online_polls_at_once() {
        let (mut s, first) = long_polling();
        let held = fetched(&s.poll_finished(first, PollOutcome::State(full(1, Vec::new())), 0.0));
        assert_eq!(
            s.set_online(false),
            [Command::AbortPoll, Command::CancelTimer]
        );
        assert_eq!(s.phase(), SyncPhase::Offline);
        assert!(s
            .poll_finished(held.ticket, PollOutcome::NotModified, 0.0)
            .is_empty());
        assert!(no_fetch(&s.timer_fired()));
        assert_eq!(fetched(&s.set_online(true)).since, Some(1));
    }

    #[test]
    fn focus_polls_at_once_instead_of_waiting_for_the_timer() {
        let (mut s, first) = started();
        s.poll_finished(first, PollOutcome::State(full(1, Vec::new())), 0.0);
        let now = s.focused();
        assert_eq!(now[0], Command::CancelTimer);
        fetched(&now);
        assert!(no_fetch(&s.focused()), "one poll in flight at most");
    }

    #[test]
    fn refetch_drops_the_held_poll_and_asks_for_everything() {
        let (mut s, first) = long_polling();
        let held = fetched(&s.poll_finished(first, PollOutcome::State(full(2, Vec::new())), 0.0));
        let again = s.refetch();
        assert_eq!(again[0], Command::AbortPoll);
        let full_poll = fetched(&again);
        assert_eq!((full_poll.since, full_poll.wait_ms), (None, None));
        assert!(s
            .poll_finished(held.ticket, PollOutcome::NotModified, 0.0)
            .is_empty());
    }

    #[test]
    fn queued_sends_show_as_failed_once_and_a_replay_makes_them_pending() {
        let (mut s, _) = started();
        let queued = crate::core::outbox::Queued {
            context_id: CTX.into(),
            client_message_id: "c1".into(),
            text: "hi".into(),
            created_at: Default::default(),
            failure: None,
        };
        s.show_queued([&queued, &queued].into_iter(), "queued");
        let messages = s.view().messages;
        assert_eq!(messages.len(), 1, "shown once");
        assert_eq!(messages[0].error.as_deref(), Some("queued"));
        assert_eq!(s.resend_local("c1").as_deref(), Some("hi"));
    }

    #[test]
    fn a_follower_does_not_poll_shows_what_it_is_handed_and_polls_once_it_leads() {
        let (mut s, first) = long_polling();
        assert_eq!(
            s.enable_election(),
            [Command::AbortPoll, Command::CancelTimer]
        );
        assert_eq!(s.election().as_deref(), Some(CTX));
        assert!(s
            .poll_finished(first, PollOutcome::NotModified, 0.0)
            .is_empty());
        assert!(no_fetch(&s.focused()));
        assert!(no_fetch(&s.set_online(false)));
        assert!(no_fetch(&s.set_online(true)));
        assert!(
            s.shared_state(state(5, Vec::new(), true, 0)),
            "a delta without a base asks for a whole state"
        );
        assert!(!s.shared_state(full(4, vec![message(1, "from the leader", None, 2)])));
        assert_eq!(s.phase(), SyncPhase::Synced);
        assert_eq!(s.view().messages.len(), 1);
        assert!(no_fetch(&s.lead("another chat")));
        let leading = fetched(&s.lead(CTX));
        assert_eq!(
            leading.since,
            Some(4),
            "the new leader goes on from the version handed"
        );
    }

    #[test]
    fn only_the_leader_replays_and_only_its_chat() {
        let (mut s, _) = long_polling();
        assert_eq!(s.replays(), Replays::All, "a tab polling alone replays all");
        s.enable_election();
        s.election();
        assert_eq!(s.replays(), Replays::None, "a follower replays nothing");
        s.lead(CTX);
        assert_eq!(s.replays(), Replays::Context(CTX.into()));
        s.set_hidden(true);
        s.election();
        assert_eq!(s.replays(), Replays::None, "hidden, it no longer leads");
    }

    #[test]
    fn a_send_refused_for_its_credentials_is_replayed_once_start_resumes() {
        let (mut s, _) = long_polling();
        s.action_unauthorized(SyncError::from_http(401, None));
        assert_eq!(s.replays(), Replays::None, "not with the refused token");
        assert_eq!(s.view().last_error.map(|e| e.kind), Some(ErrorKind::Auth));
        s.start();
        assert_eq!(s.replays(), Replays::All);
        assert_eq!(
            s.view().last_error.map(|e| e.kind),
            Some(ErrorKind::Auth),
            "until the server answers"
        );
    }

    #[test]
    fn a_tab_that_hides_stops_leading_and_must_be_elected_again() {
        let (mut s, _) = long_polling();
        s.enable_election();
        s.stop();
        assert!(no_fetch(&s.start()), "no poll before the election is won");
        fetched(&s.lead(CTX));
        s.set_hidden(true);
        assert_eq!(s.election(), None, "a hidden tab does not stand");
        assert!(
            no_fetch(&s.set_hidden(false)),
            "visible again, it waits to be elected"
        );
        assert_eq!(s.election().as_deref(), Some(CTX));
        fetched(&s.lead(CTX));
        // Without an election (no Web Locks), every tab polls alone.
        let (mut alone, _) = long_polling();
        assert_eq!(alone.election(), None);
    }

    #[test]
    fn a_send_lost_on_the_network_drops_the_held_poll_and_backs_off() {
        let (mut s, first) = long_polling();
        let held = fetched(&s.poll_finished(first, PollOutcome::State(full(1, Vec::new())), 0.0));
        let after = s.action_failed(SyncError::network("Failed to fetch"), 0.0);
        assert_eq!(
            after,
            [Command::AbortPoll, Command::SetTimer { delay_ms: 1500 }]
        );
        assert_eq!(s.phase(), SyncPhase::Offline);
        assert!(s
            .poll_finished(held.ticket, PollOutcome::NotModified, 0.0)
            .is_empty());
        // Other failures of an action say nothing about the network.
        assert!(s
            .action_failed(SyncError::from_http(400, None), 0.0)
            .is_empty());
    }
}
