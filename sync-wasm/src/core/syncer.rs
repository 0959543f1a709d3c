//! The polling loop as a pure state machine.
//!
//! The browser shell feeds it events (start, a timer fired, a poll answered, the tab was
//! hidden) and carries out the commands it returns (fetch, set or cancel the one timer).
//! Keeping time and I/O outside lets every polling rule be tested natively.
//!
//! Architecture Invariant: at most one poll is in flight, and only the answer to the poll
//! this machine is waiting for is applied; everything else is late and dropped.

use chatsync_protocol::ChatState;

use super::backoff::Backoff;
use super::options::Config;
use super::reconcile::{Applied, Chat};
use super::view::{ChatView, ErrorKind, SyncError, SyncPhase};

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Fetch(PollRequest),
    /// (Re)arm the single timer; it replaces any timer already set.
    SetTimer {
        delay_ms: u32,
    },
    CancelTimer,
}

/// One `GET /state`. With `since`, the poll asks for a delta and sends the matching ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRequest {
    pub ticket: u64,
    pub context_id: String,
    pub since: Option<u64>,
}

/// How a poll ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    State(ChatState),
    NotModified,
    /// A `Deleted` error (404) stops polling; any other error backs off.
    Failed(SyncError),
}

#[derive(Debug, Clone)]
pub struct Syncer {
    chat: Chat,
    backoff: Backoff,
    config: Config,
    running: bool,
    hidden: bool,
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

impl Syncer {
    pub fn new(config: Config, context_id: Option<String>) -> Self {
        Syncer {
            chat: Chat::new(context_id),
            backoff: Backoff::new(config),
            config,
            running: false,
            hidden: false,
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

    pub fn chat_mut(&mut self) -> &mut Chat {
        &mut self.chat
    }

    pub fn context_id(&self) -> Option<&str> {
        self.chat.context_id()
    }

    pub fn start(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        if !self.running {
            self.running = true;
            self.poll_now(&mut out);
        }
        out
    }

    /// Stops polling. A poll still in flight is forgotten, so its answer is ignored.
    pub fn stop(&mut self) -> Vec<Command> {
        self.running = false;
        self.in_flight = None;
        self.cancel_timer()
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
        self.in_flight = None;
        let mut out = self.cancel_timer();
        self.poll_now(&mut out);
        out
    }

    /// A hidden tab stops polling at once; a visible one polls at once, at the base rate.
    pub fn set_hidden(&mut self, hidden: bool) -> Vec<Command> {
        if self.hidden == hidden {
            return Vec::new();
        }
        self.hidden = hidden;
        if hidden {
            return self.cancel_timer();
        }
        self.backoff.reset();
        let mut out = Vec::new();
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
            // The poll in flight schedules the next one when it lands.
            return Vec::new();
        }
        self.schedule(now)
    }

    /// The context is gone (deleted here, or an action answered 404): stop polling it.
    pub fn context_deleted(&mut self, error: Option<SyncError>) -> Vec<Command> {
        self.deleted = true;
        self.in_flight = None;
        self.last_error = error;
        self.cancel_timer()
    }

    pub fn phase(&self) -> SyncPhase {
        if self.deleted {
            SyncPhase::Deleted
        } else if !self.running || self.chat.context_id().is_none() {
            SyncPhase::Stopped
        } else if self.hidden {
            SyncPhase::Paused
        } else if self.last_error.is_some() {
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

    fn active(&self) -> bool {
        self.running && !self.hidden && !self.deleted && self.chat.context_id().is_some()
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
        out.push(Command::Fetch(PollRequest {
            ticket: self.last_ticket,
            context_id,
            since,
        }));
    }

    fn schedule(&mut self, now: f64) -> Vec<Command> {
        if !self.active() {
            self.next_poll_at = None;
            return Vec::new();
        }
        let delay_ms = self.backoff.interval_ms();
        self.next_poll_at = Some(now + f64::from(delay_ms));
        vec![Command::SetTimer { delay_ms }]
    }

    fn cancel_timer(&mut self) -> Vec<Command> {
        self.next_poll_at = None;
        vec![Command::CancelTimer]
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::core::api::tests::Json;
    use crate::core::reconcile::tests::{full, message, state, CTX};
    use chatsync_protocol::Timestamp;

    fn started() -> (Syncer, u64) {
        let mut s = Syncer::new(Config::default(), Some(CTX.to_owned()));
        let ticket = fetched(&s.start()).ticket;
        (s, ticket)
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
        s.set_hidden(true);
        assert!(no_fetch(&s.set_hidden(false)));
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
        assert_eq!(s.stop(), [Command::CancelTimer]);
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
    fn an_answer_landing_while_hidden_schedules_nothing() {
        let (mut s, ticket) = started();
        s.set_hidden(true);
        let answered = s.poll_finished(ticket, PollOutcome::State(full(1, Vec::new())), 0.0);
        assert!(answered.is_empty());
        assert_eq!(s.view().version, 1, "the answer itself is still shown");
    }

    #[test]
    fn a_404_means_deleted_and_stops_polling() {
        let (mut s, ticket) = started();
        let after = s.poll_finished(
            ticket,
            PollOutcome::Failed(SyncError::from_http(404, &Json(""))),
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
        s.chat_mut()
            .add_local("c1".into(), "hi".into(), Timestamp::default());
        assert!(s.set_context(Some(CTX.to_owned())).is_empty());
        assert_eq!(s.view().version, 2);
        assert_eq!(s.view().messages.len(), 1);
    }

    #[test]
    fn deleting_the_context_stops_polling_it() {
        let (mut s, ticket) = started();
        assert_eq!(s.context_deleted(None), [Command::CancelTimer]);
        assert!(s
            .poll_finished(ticket, PollOutcome::NotModified, 0.0)
            .is_empty());
        assert_eq!(s.phase(), SyncPhase::Deleted);
    }
}
