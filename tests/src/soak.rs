//! A soak: simulated users against real server processes, optionally with chaos (an
//! instance killed with SIGKILL every so often and started again), then the end checks of
//! the contract's "Under load and faults". The `soak` benchmark and the short soak of the
//! test command both run [`run`]; the benchmark prints the figures, the test asserts the
//! checks.
//!
//! Each user creates a chat, then until the load phase ends: sends a message with an
//! idempotency key (`?wait=false`, `Idempotency-Key` and `client_message_id`), follows the
//! chat with long polls (`?since=&wait_ms=`) until the reply is complete and the chat
//! rests, and thinks. Every request goes to an instance picked at random; an error or a
//! failed connection is retried on the next one, as a load balancer would. When the load
//! phase ends, users finish the turn they are in, and the checks read every chat from
//! every instance.

use crate::postgres::TestPostgres;
use crate::{Api, TestServer};
use chatsync_protocol::{
    ChatState, CreateContextRequest, ErrorBody, Message, MessageStatus, Role, SendMessageRequest,
    Status,
};
use futures::StreamExt;
use reqwest::{RequestBuilder, StatusCode};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use uuid::Uuid;

/// What one soak does.
#[derive(Debug, Clone)]
pub struct Config {
    pub users: usize,
    /// Server processes; more than one needs Postgres.
    pub instances: usize,
    /// How long users start new turns.
    pub duration: Duration,
    /// A user's think time is drawn uniformly from this range, before each send.
    pub think: (Duration, Duration),
    /// SIGKILL one instance (in turn) this often during the load phase, and restart it.
    pub kill_every: Option<Duration>,
    /// After the load phase: how long turns in flight get to finish and every chat to come
    /// to rest and read the same on every instance.
    pub settle: Duration,
    /// `wait_ms` of the long polls.
    pub poll_wait: Duration,
    /// More flags for every server process.
    pub server_flags: Vec<String>,
}

/// Where the instances keep their data.
#[derive(Debug, Clone, Copy)]
pub enum Store<'a> {
    /// One SQLite file in a temporary folder (one instance only).
    Sqlite,
    /// A fresh database on this server, shared by the instances.
    Postgres(&'a TestPostgres),
}

/// One turn of one user, as the user saw it.
#[derive(Debug, Clone)]
pub struct Turn {
    pub key: String,
    pub started: Instant,
    /// When a send answered 2xx (the message is durable).
    pub acked: Option<Instant>,
    /// When the user saw the complete reply with the chat at rest.
    pub rested: Option<Instant>,
}

/// What one user did.
#[derive(Debug, Default)]
struct UserLog {
    chat: Option<Uuid>,
    turns: Vec<Turn>,
    errors: BTreeMap<String, u64>,
    /// Poll answers below the version the user had already seen.
    versions_back: u64,
}

/// Memory of one instance slot (all the processes that ran in it).
#[derive(Debug, Clone, Copy, Default)]
pub struct InstanceMemory {
    /// The largest `VmHWM` of its processes, in KiB.
    pub peak_kib: u64,
    /// `VmRSS` at start, before any user, and at the end of the load phase, of the
    /// process running then (KiB).
    pub idle_kib: u64,
    pub loaded_kib: u64,
}

/// What a soak saw, and what its end checks found.
#[derive(Debug, Default)]
pub struct Report {
    pub started: Option<Instant>,
    pub load_ended: Option<Instant>,
    pub turns: Vec<Turn>,
    pub errors: BTreeMap<String, u64>,
    pub memory: Vec<InstanceMemory>,
    /// Commits of saves and the saves they carried (`/metrics`), summed over the
    /// processes running at the end of the load phase; `None` when one did not answer.
    pub commits: Option<(u64, u64)>,
    pub kills: Vec<Instant>,
    /// Users that never got a chat (creating one failed until the end).
    pub chatless: usize,
    pub chats: usize,
    /// Acknowledged messages missing from their chat.
    pub lost: usize,
    /// Extra copies of a message (a key stored more than once).
    pub duplicated: usize,
    /// User messages the users never sent.
    pub unknown: usize,
    /// User messages without a complete reply.
    pub unanswered: usize,
    /// Chats not resting (not idle, or with a queue) at the end.
    pub not_at_rest: usize,
    /// Chats whose state differs between instances at the end.
    pub disagreeing: usize,
    /// Chats that could not be read at the end.
    pub unreadable: usize,
    pub versions_back: u64,
    /// What is wrong with the first few chats that failed a check, in words.
    pub details: Vec<String>,
    /// The servers' logs, kept when a check failed.
    pub logs: Option<std::path::PathBuf>,
}

/// Chats described in `Report::details` at most.
const DETAILS: usize = 10;

impl Report {
    /// Turns whose reply the user saw during the load phase.
    pub fn completed_turns(&self) -> usize {
        let end = self.load_ended;
        self.turns
            .iter()
            .filter(|t| matches!((t.rested, end), (Some(r), Some(e)) if r <= e))
            .count()
    }

    /// Send to acknowledgement, for every acknowledged send (retries included).
    pub fn ack_latencies(&self) -> Vec<Duration> {
        sorted(self.turns.iter().filter_map(|t| Some(t.acked? - t.started)))
    }

    /// Send to the complete reply at rest, for every turn the user saw end.
    pub fn reply_latencies(&self) -> Vec<Duration> {
        sorted(
            self.turns
                .iter()
                .filter_map(|t| Some(t.rested? - t.started)),
        )
    }

    /// For each kill: from the kill until every turn acknowledged before it and still
    /// running at it rested (zero when none was running, `None` when one never rested).
    pub fn rest_after_kills(&self) -> Vec<Option<Duration>> {
        self.kills
            .iter()
            .map(|&kill| {
                let caught = self.turns.iter().filter(|t| {
                    t.acked.is_some_and(|a| a <= kill) && t.rested.is_none_or(|r| r > kill)
                });
                caught
                    .map(|t| t.rested.map(|r| r - kill))
                    .try_fold(Duration::ZERO, |longest, took| Some(longest.max(took?)))
            })
            .collect()
    }

    /// Chats found wrong, counted once per check they fail.
    fn problems(&self) -> usize {
        self.lost
            + self.duplicated
            + self.unknown
            + self.unanswered
            + self.not_at_rest
            + self.disagreeing
            + self.unreadable
    }

    /// The end checks that failed, in words; empty when the soak passed.
    pub fn failures(&self) -> Vec<String> {
        let counts = [
            (self.lost, "acknowledged messages lost"),
            (self.duplicated, "messages stored more than once"),
            (self.unknown, "user messages nobody sent"),
            (self.unanswered, "user messages without a complete reply"),
            (self.not_at_rest, "chats not at rest"),
            (self.disagreeing, "chats the instances disagree on"),
            (self.unreadable, "chats that could not be read"),
        ];
        let mut failures: Vec<String> = counts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if self.versions_back > 0 {
            failures.push(format!(
                "{} poll answers went below the version the client held",
                self.versions_back
            ));
        }
        if self.chats == 0 {
            failures.push("no user got a chat".to_owned());
        }
        failures
    }
}

fn sorted(samples: impl Iterator<Item = Duration>) -> Vec<Duration> {
    let mut samples: Vec<Duration> = samples.collect();
    samples.sort_unstable();
    samples
}

/// Raises this process's soft limit of open files to the hard one: every user holds a
/// connection or two, and the servers it starts inherit the limit.
pub fn raise_open_files_limit() -> Result<u64, String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| e.to_string())?;
    }
    Ok(hard)
}

/// The instances, as users and the chaos see them.
#[derive(Debug)]
struct Cluster {
    dir: tempfile::TempDir,
    database_url: String,
    flags: Vec<String>,
    /// Clients of the running processes, by slot; replaced when a slot restarts.
    apis: RwLock<Vec<Api>>,
    servers: Mutex<Vec<TestServer>>,
    memory: std::sync::Mutex<Vec<InstanceMemory>>,
}

impl Cluster {
    async fn start(config: &Config, store: Store<'_>) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("chatsync-soak")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let database_url = match store {
            Store::Sqlite if config.instances > 1 => {
                return Err("several instances need Postgres".to_owned())
            }
            Store::Sqlite => format!("sqlite://{}", dir.path().join("db.sqlite").display()),
            Store::Postgres(pg) => pg.database("soak"),
        };
        let cluster = Cluster {
            dir,
            database_url,
            flags: config.server_flags.clone(),
            apis: RwLock::new(Vec::new()),
            servers: Mutex::new(Vec::new()),
            memory: std::sync::Mutex::new(Vec::new()),
        };
        for _ in 0..config.instances.max(1) {
            let server = cluster.spawn().await;
            let memory = server.memory_kib().unwrap_or_default();
            write(&cluster.apis).push(server.api());
            cluster.servers.lock().await.push(server);
            lock(&cluster.memory).push(InstanceMemory {
                peak_kib: memory.peak_kib,
                idle_kib: memory.rss_kib,
                loaded_kib: 0,
            });
        }
        Ok(cluster)
    }

    async fn spawn(&self) -> TestServer {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        TestServer::start_with_database(self.dir.path(), &self.database_url, &flags).await
    }

    fn len(&self) -> usize {
        read(&self.apis).len()
    }

    fn api(&self, slot: usize) -> Api {
        let apis = read(&self.apis);
        apis[slot % apis.len()].clone()
    }

    /// Notes the peak memory of every running process (and, with `loaded`, their memory
    /// now as the loaded figure).
    async fn note_memory(&self, loaded: bool) {
        let servers = self.servers.lock().await;
        let mut memory = lock(&self.memory);
        for (slot, server) in servers.iter().enumerate() {
            if let Some(now) = server.memory_kib() {
                memory[slot].peak_kib = memory[slot].peak_kib.max(now.peak_kib);
                if loaded {
                    memory[slot].loaded_kib = now.rss_kib;
                }
            }
        }
    }

    /// Commits of saves and the saves they carried, summed over the running processes.
    async fn commits(&self) -> Option<(u64, u64)> {
        let apis = read(&self.apis).clone();
        let mut total = (0, 0);
        for api in apis {
            let text = api.get("/metrics").send().await.ok()?.text().await.ok()?;
            let value = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
            };
            total.0 += value("chatsync_store_commits_total")?;
            total.1 += value("chatsync_store_committed_saves_total")?;
        }
        Some(total)
    }

    /// SIGKILL the process in `slot` and start another on the same database. Answers when
    /// it was killed.
    async fn kill_and_restart(&self, slot: usize) -> Instant {
        self.note_memory(false).await;
        let mut servers = self.servers.lock().await;
        servers[slot].kill9().await;
        let killed = Instant::now();
        let server = self.spawn().await;
        write(&self.apis)[slot] = server.api();
        servers[slot] = server;
        killed
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(lock: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What every user task shares.
#[derive(Debug)]
struct Shared {
    cluster: Cluster,
    run: String,
    think: (Duration, Duration),
    poll_wait: Duration,
    /// No new turn starts after this.
    load_end: Instant,
    /// Nothing waits past this.
    end: Instant,
}

/// Runs the soak and its end checks. `Err` only when it could not start.
pub async fn run(config: &Config, store: Store<'_>) -> Result<Report, String> {
    // Best effort: without it a large soak reports connection errors, which say why.
    let _ = raise_open_files_limit();
    let cluster = Cluster::start(config, store).await?;
    let started = Instant::now();
    let load_end = started + config.duration;
    let shared = Arc::new(Shared {
        cluster,
        run: Uuid::new_v4().simple().to_string()[..8].to_owned(),
        think: config.think,
        poll_wait: config.poll_wait,
        load_end,
        end: load_end + config.settle,
    });
    let users: Vec<_> = (0..config.users)
        .map(|_| tokio::spawn(user(Arc::clone(&shared))))
        .collect();
    let kills = chaos(&shared, config.kill_every).await;
    shared.cluster.note_memory(true).await;
    let commits = shared.cluster.commits().await;

    let mut report = Report {
        started: Some(started),
        load_ended: Some(load_end),
        commits,
        kills,
        ..Report::default()
    };
    let mut chats = Vec::new();
    for user in users {
        let log = user.await.map_err(|e| format!("a user task failed: {e}"))?;
        for (kind, n) in log.errors {
            *report.errors.entry(kind).or_default() += n;
        }
        report.versions_back += log.versions_back;
        match log.chat {
            Some(chat) => chats.push((chat, log.turns.clone())),
            None => report.chatless += 1,
        }
        report.turns.extend(log.turns);
    }
    check(&shared, &chats, &mut report).await;
    shared.cluster.note_memory(false).await;
    report.memory = lock(&shared.cluster.memory).clone();
    if !report.failures().is_empty() {
        let shared =
            Arc::into_inner(shared).ok_or_else(|| "a user task outlived the soak".to_owned())?;
        // Stopped first, so the logs are whole.
        drop(shared.cluster.servers);
        report.logs = Some(shared.cluster.dir.keep());
    }
    Ok(report)
}

/// Kills an instance every `every` until the load phase ends (the instances in turn);
/// without chaos, waits for the load phase to end. Answers when each kill happened.
async fn chaos(shared: &Shared, every: Option<Duration>) -> Vec<Instant> {
    let mut kills = Vec::new();
    let Some(every) = every else {
        tokio::time::sleep_until(shared.load_end.into()).await;
        return kills;
    };
    let mut next = Instant::now() + every;
    while next < shared.load_end {
        tokio::time::sleep_until(next.into()).await;
        let slot = kills.len() % shared.cluster.len();
        kills.push(shared.cluster.kill_and_restart(slot).await);
        next += every;
    }
    tokio::time::sleep_until(shared.load_end.into()).await;
    kills
}

/// A uniformly random duration in `range`.
fn between((low, high): (Duration, Duration)) -> Duration {
    let span = high.saturating_sub(low).as_millis() as u64;
    low + Duration::from_millis(fastrand::u64(0..=span))
}

/// How long a request may take beyond what it asked to wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Between retries of a failed request (a load balancer's retry is quicker; this keeps a
/// soak against a dead instance from spinning).
const RETRY_PAUSE: (Duration, Duration) = (Duration::from_millis(20), Duration::from_millis(200));

/// Sends a request to a random instance, and on an error or a failed connection again to
/// the next one, until it answers 2xx or 304 or `until` passes. Errors are counted by kind.
async fn call(
    shared: &Shared,
    errors: &mut BTreeMap<String, u64>,
    until: Instant,
    build: impl Fn(&Api) -> RequestBuilder,
) -> Option<(StatusCode, Vec<u8>)> {
    let mut slot = fastrand::usize(..shared.cluster.len());
    loop {
        let answer = build(&shared.cluster.api(slot)).send().await;
        let kind = match answer {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(body) if status.is_success() || status == StatusCode::NOT_MODIFIED => {
                        return Some((status, body.to_vec()))
                    }
                    Ok(body) => match serde_json::from_slice::<ErrorBody>(&body) {
                        Ok(e) => format!("{} {}", status.as_u16(), e.error.code),
                        Err(_) => status.as_u16().to_string(),
                    },
                    Err(e) => transport_kind(&e),
                }
            }
            Err(e) => transport_kind(&e),
        };
        *errors.entry(kind).or_default() += 1;
        if Instant::now() >= until {
            return None;
        }
        slot += 1;
        tokio::time::sleep(between(RETRY_PAUSE)).await;
    }
}

fn transport_kind(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "connect"
    } else if e.is_timeout() {
        "timeout"
    } else {
        "connection lost"
    };
    kind.to_owned()
}

/// The chat as one user knows it: merged from full states and deltas.
#[derive(Debug, Default)]
struct View {
    version: u64,
    status: Option<Status>,
    messages: HashMap<Uuid, Message>,
}

impl View {
    fn apply(&mut self, state: ChatState) {
        if !state.delta {
            self.messages.clear();
        }
        self.version = state.version;
        self.status = Some(state.status);
        self.messages
            .extend(state.messages.into_iter().map(|m| (m.id, m)));
    }

    /// The message sent with `key` has its complete reply, and the chat rests.
    fn answered(&self, key: &str) -> bool {
        let Some(sent) = self
            .messages
            .values()
            .find(|m| m.role == Role::User && m.client_message_id.as_deref() == Some(key))
        else {
            return false;
        };
        self.status == Some(Status::Idle) && replied(self.messages.values(), sent.id)
    }
}

/// Whether a complete assistant message answers the message `id`.
fn replied<'a>(mut messages: impl Iterator<Item = &'a Message>, id: Uuid) -> bool {
    messages.any(|m| {
        m.role == Role::Assistant && m.parent_id == Some(id) && m.status == MessageStatus::Complete
    })
}

/// One simulated user: a chat, then turns with think time until the load phase ends.
async fn user(shared: Arc<Shared>) -> UserLog {
    let mut log = UserLog::default();
    // Users arrive over the first think time, not all at once.
    tokio::time::sleep(between((Duration::ZERO, shared.think.1))).await;
    let created = call(&shared, &mut log.errors, shared.load_end, |api| {
        api.post("/api/contexts")
            .json(&CreateContextRequest::default())
            .timeout(REQUEST_TIMEOUT)
    })
    .await;
    let Some(chat) = created.and_then(|(_, body)| {
        serde_json::from_slice::<chatsync_protocol::ContextSummary>(&body).ok()
    }) else {
        return log;
    };
    log.chat = Some(chat.id);
    let mut view = View::default();
    for n in 0.. {
        if n > 0 {
            tokio::time::sleep(between(shared.think)).await;
        }
        if Instant::now() >= shared.load_end {
            break;
        }
        let turn = turn(&shared, &mut log, &mut view, chat.id, n).await;
        let failed = turn.rested.is_none();
        log.turns.push(turn);
        if failed {
            break;
        }
    }
    log
}

/// One turn: send with an idempotency key, then follow until the reply is complete and
/// the chat rests.
async fn turn(shared: &Shared, log: &mut UserLog, view: &mut View, chat: Uuid, n: u32) -> Turn {
    let key = format!("soak-{}-{}-{n}", shared.run, log_id(chat));
    let mut turn = Turn {
        key: key.clone(),
        started: Instant::now(),
        acked: None,
        rested: None,
    };
    let body = SendMessageRequest {
        content: format!("message {n} of a soak: how many words does this one have?"),
        client_message_id: Some(key.clone()),
        if_busy: None,
    };
    let path = format!("/api/contexts/{chat}/actions/send_message?wait=false");
    let acked = call(shared, &mut log.errors, shared.end, |api| {
        api.post(&path)
            .header("Idempotency-Key", &key)
            .json(&body)
            .timeout(REQUEST_TIMEOUT)
    })
    .await;
    let Some((_, body)) = acked else {
        return turn;
    };
    turn.acked = Some(Instant::now());
    if let Ok(state) = serde_json::from_slice::<ChatState>(&body) {
        if state.version >= view.version {
            view.apply(state);
        }
    }
    while !view.answered(&key) {
        if view.status == Some(Status::Failed) {
            *log.errors.entry("turn failed".to_owned()).or_default() += 1;
            return turn;
        }
        let left = shared.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return turn;
        }
        let wait = shared.poll_wait.min(left);
        let since = view.version;
        let path = format!(
            "/api/contexts/{chat}/state?since={since}&wait_ms={}",
            wait.as_millis()
        );
        let polled = call(shared, &mut log.errors, shared.end, |api| {
            api.get(&path).timeout(wait + REQUEST_TIMEOUT)
        })
        .await;
        let Some((status, body)) = polled else {
            return turn;
        };
        if status == StatusCode::NOT_MODIFIED {
            continue;
        }
        match serde_json::from_slice::<ChatState>(&body) {
            Ok(state) if state.version < since => log.versions_back += 1,
            Ok(state) => view.apply(state),
            Err(_) => {
                *log.errors
                    .entry("undecodable state".to_owned())
                    .or_default() += 1
            }
        }
    }
    turn.rested = Some(Instant::now());
    turn
}

/// A short name for a chat in message keys.
fn log_id(chat: Uuid) -> String {
    chat.simple().to_string()[..12].to_owned()
}

/// Reads every chat from every instance until all rest and agree (or the settle time
/// ends), and counts what is wrong with them.
async fn check(shared: &Shared, chats: &[(Uuid, Vec<Turn>)], report: &mut Report) {
    const READERS: usize = 16;
    report.chats = chats.len();
    let results: Vec<_> = futures::stream::iter(chats)
        .map(|(chat, turns)| settled_state(shared, *chat, turns))
        .buffer_unordered(READERS)
        .collect()
        .await;
    for result in results {
        match result {
            Settled::Unreadable => report.unreadable += 1,
            Settled::Read { states, turns } => {
                let before = report.problems();
                let disagree = states.windows(2).any(|w| w[0] != w[1]);
                report.disagreeing += usize::from(disagree);
                count_problems(&states[0], &turns, report);
                if report.problems() > before && report.details.len() < DETAILS {
                    report.details.push(describe(&states));
                }
            }
        }
    }
}

enum Settled {
    Unreadable,
    Read {
        states: Vec<ChatState>,
        turns: Vec<Turn>,
    },
}

/// The chat's full state from each instance, polled until they rest and agree or the
/// settle time ends (then the last ones read).
async fn settled_state(shared: &Shared, chat: Uuid, turns: &[Turn]) -> Settled {
    let path = format!("/api/contexts/{chat}/state");
    loop {
        let mut states = Vec::new();
        for slot in 0..shared.cluster.len() {
            let api = shared.cluster.api(slot);
            let state = match api.get(&path).timeout(REQUEST_TIMEOUT).send().await {
                Ok(r) if r.status() == StatusCode::OK => r.json::<ChatState>().await.ok(),
                _ => None,
            };
            states.extend(state);
        }
        let complete = states.len() == shared.cluster.len();
        let done = complete
            && states.windows(2).all(|w| w[0] == w[1])
            && at_rest(&states[0])
            && all_answered(&states[0]);
        if done || Instant::now() >= shared.end {
            if states.is_empty() {
                return Settled::Unreadable;
            }
            return Settled::Read {
                states,
                turns: turns.to_vec(),
            };
        }
        tokio::time::sleep(RETRY_PAUSE.1).await;
    }
}

fn at_rest(state: &ChatState) -> bool {
    state.status == Status::Idle && state.queued.is_empty()
}

fn all_answered(state: &ChatState) -> bool {
    state
        .messages
        .iter()
        .filter(|m| m.role == Role::User)
        .all(|m| replied(state.messages.iter(), m.id))
}

fn count_problems(state: &ChatState, turns: &[Turn], report: &mut Report) {
    if !at_rest(state) {
        report.not_at_rest += 1;
    }
    let mut stored: HashMap<&str, usize> = HashMap::new();
    let users = state.messages.iter().filter(|m| m.role == Role::User);
    for m in users.clone() {
        if !replied(state.messages.iter(), m.id) {
            report.unanswered += 1;
        }
    }
    // A queued message is stored too (and the chat is not at rest).
    for m in users.chain(&state.queued) {
        match m.client_message_id.as_deref() {
            Some(key) if turns.iter().any(|t| t.key == key) => {
                *stored.entry(key).or_default() += 1;
            }
            _ => report.unknown += 1,
        }
    }
    for turn in turns {
        let copies = stored.get(turn.key.as_str()).copied().unwrap_or(0);
        if copies == 0 && turn.acked.is_some() {
            report.lost += 1;
        }
        report.duplicated += copies.saturating_sub(1);
    }
}

/// A chat that failed a check as each instance shows it.
fn describe(states: &[ChatState]) -> String {
    let shown: Vec<String> = states
        .iter()
        .enumerate()
        .map(|(slot, s)| {
            let last: Vec<String> = s
                .messages
                .iter()
                .rev()
                .take(2)
                .map(|m| format!("{:?} {:?} v{}", m.role, m.status, m.version))
                .collect();
            format!(
                "instance {slot}: v{} {:?} {:?} error={:?} queued={} messages={} last=[{}]",
                s.version,
                s.status,
                s.state,
                s.error,
                s.queued.len(),
                s.messages.len(),
                last.join(", ")
            )
        })
        .collect();
    format!("chat {}: {}", states[0].context_id, shown.join("; "))
}
