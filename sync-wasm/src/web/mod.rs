//! The browser shell: the `ChatSync` class JavaScript uses.
//!
//! It owns the things the pure core cannot: the one timer, `fetch`, the
//! `visibilitychange` listener, the subscribers and the conversion to JavaScript values.
//! Every event goes to the [`Syncer`], and the commands it answers are carried out here.

pub mod convert;
mod http;
mod queue;
mod tabs;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use gloo_timers::callback::Timeout;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;
use web_sys::{AbortController, Document, EventTarget, VisibilityState};

use self::convert::{describe, from_js, optional_from_js, to_js};
use self::http::{Reply, Transport};
use self::queue::Stored;
use self::tabs::Tabs;
use crate::core::api::{self, Api, BareAction, HttpRequest};
use crate::core::error::SyncError;
use crate::core::options::ChatSyncOptions;
use crate::core::outbox::Outbox;
use crate::core::reconcile::new_client_message_id;
use crate::core::session::{self, Answer, Answered, Outgoing, Sending};
use crate::core::syncer::{Command, PollOutcome, PollRequest, Syncer};
use crate::core::view::{ChatView, CreateContextOptions, ListOptions, ViewMessage};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = include_str!("types.d.ts");

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "ChatSyncOptions")]
    pub type ChatSyncOptionsArg;
    #[wasm_bindgen(typescript_type = "ChatView")]
    pub type ChatViewValue;
    #[wasm_bindgen(typescript_type = "(view: ChatView) => void")]
    pub type Listener;
    #[wasm_bindgen(typescript_type = "() => void")]
    pub type Unsubscribe;
    #[wasm_bindgen(typescript_type = "CreateContextOptions")]
    pub type CreateContextOptionsArg;
    #[wasm_bindgen(typescript_type = "ListContextsOptions")]
    pub type ListContextsOptionsArg;
    #[wasm_bindgen(typescript_type = "Promise<void>")]
    pub type PromiseVoid;
    #[wasm_bindgen(typescript_type = "Promise<ContextSummary>")]
    pub type PromiseContextSummary;
    #[wasm_bindgen(typescript_type = "Promise<ContextList>")]
    pub type PromiseContextList;
    #[wasm_bindgen(typescript_type = "Promise<unknown>")]
    pub type PromiseUnknown;

    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buffer: &mut [u8]);
}

/// Keeps one chat's view in sync with the server. See the package README for the rules.
#[wasm_bindgen]
pub struct ChatSync {
    shared: Rc<Shared>,
}

impl std::fmt::Debug for ChatSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.state.borrow();
        f.debug_struct("ChatSync")
            .field("context_id", &state.syncer.context_id())
            .field("sync", &state.syncer.phase())
            .finish()
    }
}

struct Shared {
    api: Api,
    /// Shared with requests in flight, which must not keep the `ChatSync` itself alive.
    transport: Rc<Transport>,
    on_auth_error: Option<Function>,
    state: RefCell<State>,
    /// The browser events followed (`visibilitychange`, `online`, `offline`, `focus`).
    /// The closures hold only a weak reference back, like the timer's callback, so
    /// dropping `ChatSync` frees everything.
    events: Vec<Followed>,
    document: Option<Document>,
    /// The offline queue, kept in `localStorage` per scope.
    queue: Stored,
    /// The base URL and user: what the queue's storage key and the tab election are per.
    scope: String,
    /// The chat this tab takes part in the leader election for, and the election (None
    /// where the browser cannot elect: the tab polls alone).
    tabs: RefCell<Option<(String, Option<Tabs>)>>,
}

/// A browser event followed: where, which, and the closure the browser calls.
type Followed = (EventTarget, &'static str, Closure<dyn FnMut()>);

/// The options that are functions: `serde` reads data, so these are taken off the options
/// object before the rest is read.
struct Callbacks {
    get_token: Option<Function>,
    fetch: Option<Function>,
    on_auth_error: Option<Function>,
}

impl Callbacks {
    fn take(options: &JsValue) -> Result<(JsValue, Callbacks), SyncError> {
        if !options.is_object() {
            // Reading it as options gives the clear error.
            return Ok((options.clone(), Callbacks::none()));
        }
        let copy: JsValue =
            js_sys::Object::assign(&js_sys::Object::new(), options.unchecked_ref()).into();
        let take = |key: &str| -> Result<Option<Function>, SyncError> {
            let key = JsValue::from_str(key);
            let value = js_sys::Reflect::get(&copy, &key).unwrap_or(JsValue::UNDEFINED);
            let _ = js_sys::Reflect::delete_property(copy.unchecked_ref::<js_sys::Object>(), &key);
            if value.is_undefined() || value.is_null() {
                Ok(None)
            } else {
                value.dyn_into::<Function>().map(Some).map_err(|_| {
                    SyncError::invalid(format!(
                        "options: {} must be a function",
                        key.as_string().unwrap_or_default()
                    ))
                })
            }
        };
        let callbacks = Callbacks {
            get_token: take("getToken")?,
            fetch: take("fetch")?,
            on_auth_error: take("onAuthError")?,
        };
        Ok((copy, callbacks))
    }

    fn none() -> Self {
        Callbacks {
            get_token: None,
            fetch: None,
            on_auth_error: None,
        }
    }
}

struct State {
    syncer: Syncer,
    listeners: Vec<(u32, Function)>,
    last_listener: u32,
    /// The one poll timer; dropping it cancels it.
    timer: Option<Timeout>,
    /// Aborts the poll in flight (a held long-poll) when the syncer no longer wants it.
    poll_abort: Option<AbortController>,
    emitted: Option<ChatView>,
    /// The messages last handed out, with their JavaScript objects, in view order: an
    /// unchanged message keeps its object from view to view, so `React.memo` and `===`
    /// skip it. Matched by position, since the history only grows at its end (a map by id
    /// measured 4.5 KB more in the download).
    message_objects: Vec<(ViewMessage, JsValue)>,
}

#[wasm_bindgen]
impl ChatSync {
    #[wasm_bindgen(constructor)]
    pub fn new(options: ChatSyncOptionsArg) -> Result<ChatSync, JsValue> {
        let (options, callbacks) = Callbacks::take(&options.into()).map_err(|e| js_error(&e))?;
        let options: ChatSyncOptions = from_js(options, "options").map_err(|e| js_error(&e))?;
        let config = options.config().map_err(|e| js_error(&e))?;
        let window = js_sys::global().dyn_into::<web_sys::Window>().ok();
        let document = window.as_ref().and_then(|w| w.document());
        let jitter = Box::new(js_sys::Math::random);
        let scope = options.scope();
        let shared = Rc::new_cyclic(|weak: &Weak<Shared>| {
            let mut events = Vec::new();
            let mut follow = |target: &EventTarget, name: &'static str, event: fn(&Rc<Shared>)| {
                let shared = weak.clone();
                let closure = Closure::<dyn FnMut()>::new(move || with_live(&shared, event));
                events.push((target.clone(), name, closure));
            };
            if let Some(document) = &document {
                follow(document, "visibilitychange", |s| {
                    let hidden = s.hidden();
                    s.update(|sync| sync.set_hidden(hidden));
                });
            }
            if let Some(window) = &window {
                follow(window, "online", |s| {
                    s.update(|sync| sync.set_online(true));
                    s.replay();
                });
                follow(window, "offline", |s| {
                    s.update(|sync| sync.set_online(false))
                });
                follow(window, "focus", |s| s.update(Syncer::focused));
            }
            Shared {
                api: Api::new(&options.base_url),
                transport: Rc::new(Transport {
                    headers: options.headers.clone().unwrap_or_default(),
                    get_token: callbacks.get_token,
                    fetch: callbacks.fetch,
                    credentials: options.credentials,
                    timeout_ms: config.request_timeout_ms,
                }),
                on_auth_error: callbacks.on_auth_error,
                state: RefCell::new(State {
                    syncer: Syncer::new(config, options.context_id.clone(), jitter),
                    listeners: Vec::new(),
                    last_listener: 0,
                    timer: None,
                    poll_abort: None,
                    emitted: None,
                    message_objects: Vec::new(),
                }),
                events,
                document,
                queue: Stored::open(window.as_ref(), &scope),
                scope,
                tabs: RefCell::new(None),
            }
        });
        for (target, name, closure) in &shared.events {
            target
                .add_event_listener_with_callback(name, closure.as_ref().unchecked_ref())
                .map_err(|e| js_error(&SyncError::invalid(describe(&e))))?;
        }
        let hidden = shared.hidden();
        let online = navigator_online();
        let elect = Tabs::supported();
        shared.update(|sync| {
            let mut out = [sync.set_hidden(hidden), sync.set_online(online)].concat();
            if elect {
                out.extend(sync.enable_election());
            }
            out
        });
        shared.show_queued();
        shared.replay();
        Ok(ChatSync { shared })
    }

    /// Forgets the offline queue this browser keeps for `options`' `baseUrl` and `userId`
    /// (the other options are ignored): call it when that user signs out, so their unsent
    /// messages are neither shown nor replayed later. A `ChatSync` still open for the user
    /// stops replaying them too.
    #[wasm_bindgen(js_name = clearOfflineQueue)]
    pub fn clear_offline_queue(options: ChatSyncOptionsArg) -> Result<(), JsValue> {
        let (options, _) = Callbacks::take(&options.into()).map_err(|e| js_error(&e))?;
        let options: ChatSyncOptions = from_js(options, "options").map_err(|e| js_error(&e))?;
        options.config().map_err(|e| js_error(&e))?;
        let window = js_sys::global().dyn_into::<web_sys::Window>().ok();
        Stored::open(window.as_ref(), &options.scope()).change(Outbox::clear);
        Ok(())
    }

    /// Calls `listener` at once with the current view, then after every change.
    pub fn subscribe(&self, listener: Listener) -> Unsubscribe {
        let listener: Function = listener.unchecked_into();
        let id = {
            let mut state = self.shared.state.borrow_mut();
            state.last_listener += 1;
            let id = state.last_listener;
            state.listeners.push((id, listener.clone()));
            id
        };
        call_listener(&listener, &self.shared.view_value());
        let shared = Rc::downgrade(&self.shared);
        // Not a one-shot closure: calling the unsubscribe function twice must be harmless.
        let off = Closure::<dyn FnMut()>::new(move || {
            with_live(&shared, |s| {
                s.state.borrow_mut().listeners.retain(|(l, _)| *l != id)
            })
        });
        off.into_js_value().unchecked_into()
    }

    #[wasm_bindgen(js_name = getView)]
    pub fn get_view(&self) -> ChatViewValue {
        self.shared.view_value().unchecked_into()
    }

    /// Starts polling; after an auth error, also replays the sends the server refused.
    pub fn start(&self) {
        self.shared.update(Syncer::start);
        self.shared.replay();
    }

    pub fn stop(&self) {
        self.shared.update(Syncer::stop);
    }

    /// Drops the version held and asks the server for the whole state now.
    pub fn refetch(&self) {
        self.shared.update(Syncer::refetch);
    }

    #[wasm_bindgen(js_name = setContext)]
    pub fn set_context(&self, id: Option<String>) {
        self.shared.update(|sync| sync.set_context(id));
        self.shared.show_queued();
    }

    /// Shows the message at once as pending, then sends it. On failure the message stays,
    /// marked failed, and the promise rejects with a `SyncError`. A send lost on the
    /// network, or made offline (`code: "queued"`), stays in the offline queue and is
    /// replayed once the server can be reached; a full queue rejects with
    /// `code: "queue_full"` and shows nothing.
    #[wasm_bindgen(js_name = sendMessage)]
    pub fn send_message(&self, text: String) -> PromiseVoid {
        let mut random = [0u8; 16];
        get_random_values(&mut random);
        let client_message_id = new_client_message_id(random);
        // An ISO string is what the server sends too; this reads it as whichever type
        // `Timestamp` is in this build, and only a broken `Date` could fail.
        let created_at: chatsync_protocol::Timestamp =
            String::from(js_sys::Date::new_0().to_iso_string())
                .parse()
                .unwrap_or_default();
        let online = navigator_online();
        let sending = self.shared.decide(|syncer, outbox| {
            session::send(syncer, outbox, online, text, client_message_id, created_at)
        });
        self.shared.notify();
        match sending {
            Ok(Sending::Now(outgoing)) => self.deliver(Ok(outgoing)),
            Ok(Sending::Queued) => {
                // Older queued sends go first, or the browser is offline: this one waits
                // its turn in the queue.
                self.shared.replay();
                rejected(session::queued_error())
            }
            Err(error) => rejected(error),
        }
    }

    /// Re-sends a failed message with its original `client_message_id`, so the server
    /// stores it at most once even if the first attempt did reach it.
    #[wasm_bindgen(js_name = retryMessage)]
    pub fn retry_message(
        &self,
        #[wasm_bindgen(js_name = clientMessageId)] client_message_id: String,
    ) -> PromiseVoid {
        let outgoing = self
            .shared
            .decide(|syncer, outbox| session::retry(syncer, outbox, client_message_id));
        self.shared.notify();
        self.deliver(outgoing)
    }

    /// Drops a failed message; does nothing for any other id.
    #[wasm_bindgen(js_name = discardMessage)]
    pub fn discard_message(
        &self,
        #[wasm_bindgen(js_name = clientMessageId)] client_message_id: String,
    ) {
        let discarded = self
            .shared
            .decide(|syncer, outbox| session::discard(syncer, outbox, &client_message_id));
        if discarded {
            self.shared.notify();
        }
    }

    /// Approves these tool calls and denies every other pending one.
    #[wasm_bindgen(js_name = approveTools)]
    pub fn approve_tools(&self, ids: Vec<String>) -> PromiseVoid {
        self.action(|api, context| api.approve_tools(context, ids))
    }

    pub fn cancel(&self) -> PromiseVoid {
        self.action(|api, context| api.bare_action(context, BareAction::Cancel))
    }

    pub fn retry(&self) -> PromiseVoid {
        self.action(|api, context| api.bare_action(context, BareAction::Retry))
    }

    /// Drops a queued message of the current context before its turn starts.
    #[wasm_bindgen(js_name = cancelQueued)]
    pub fn cancel_queued(&self, message_id: String) -> PromiseVoid {
        self.action(|api, context| api.cancel_queued(context, &message_id))
    }

    /// A new version of a user message on the active path: it becomes the active branch
    /// and its turn runs. Only while the chat rests (else `invalid_state`).
    #[wasm_bindgen(js_name = editMessage)]
    pub fn edit_message(&self, message_id: String, content: String) -> PromiseVoid {
        self.action(|api, context| api.edit_message(context, &message_id, &content))
    }

    /// A new reply beside an assistant message (by default the last one); it streams as
    /// the active branch. Only while the chat rests.
    pub fn regenerate(&self, message_id: Option<String>) -> PromiseVoid {
        self.action(|api, context| api.regenerate(context, message_id.as_deref()))
    }

    /// Shows the branch of `message_id` (its newest leaf), or with `siblingIndex` the
    /// branch of that version of the message (0-based, as in `siblingIndex` of the view),
    /// which is what a "< 2/3 >" switcher needs. Only while the chat rests.
    #[wasm_bindgen(js_name = switchBranch)]
    pub fn switch_branch(&self, message_id: String, sibling_index: Option<u32>) -> PromiseVoid {
        self.action(|api, context| api.switch_branch(context, &message_id, sibling_index))
    }

    #[wasm_bindgen(js_name = renameContext)]
    pub fn rename_context(&self, id: String, title: String) -> PromiseContextSummary {
        let request = self.shared.api.rename_context(&id, &title);
        self.request(Ok(request), Answer::Summary)
    }

    #[wasm_bindgen(js_name = createContext)]
    pub fn create_context(
        &self,
        options: Option<CreateContextOptionsArg>,
    ) -> PromiseContextSummary {
        let request = optional_from_js::<CreateContextOptions>(
            options.map(Into::into),
            "createContext options",
        )
        .map(|o| self.shared.api.create_context(o.into()));
        self.request(request, Answer::Summary)
    }

    #[wasm_bindgen(js_name = listContexts)]
    pub fn list_contexts(&self, options: Option<ListContextsOptionsArg>) -> PromiseContextList {
        let request =
            optional_from_js::<ListOptions>(options.map(Into::into), "listContexts options")
                .map(|o| self.shared.api.list_contexts(&o));
        self.request(request, Answer::List)
    }

    /// Deletes a context; when it is the current one, polling it stops.
    #[wasm_bindgen(js_name = deleteContext)]
    pub fn delete_context(&self, id: String) -> PromiseVoid {
        let request = self.shared.api.delete_context(&id);
        self.request(Ok(request), Answer::Deleted { context_id: id })
    }

    /// One `GET /state` of the current context, answered as the server sent it.
    #[wasm_bindgen(js_name = getChatState)]
    pub fn get_chat_state(&self) -> PromiseUnknown {
        let request = self
            .current_context()
            .map(|context| self.shared.api.state(&context));
        self.request(request, Answer::Raw)
    }
}

impl ChatSync {
    fn current_context(&self) -> Result<String, SyncError> {
        session::current_context(&self.shared.state.borrow().syncer)
    }

    /// Sends a user message the core decided to send now.
    fn deliver(&self, outgoing: Result<Outgoing, SyncError>) -> PromiseVoid {
        let request = outgoing.map(|o| {
            let request =
                self.shared
                    .api
                    .send_message(&o.context_id, &o.text, &o.client_message_id);
            (request, o.client_message_id)
        });
        match request {
            Ok((request, client_message_id)) => {
                self.request(Ok(request), Answer::Sent { client_message_id })
            }
            Err(error) => rejected(error),
        }
    }

    /// An action on the current context whose answer is the context's state.
    fn action(&self, build: impl FnOnce(&Api, &str) -> HttpRequest) -> PromiseVoid {
        let request = self
            .current_context()
            .map(|context| build(&self.shared.api, &context));
        self.request(request, Answer::State)
    }

    /// Sends `request` and settles the promise with what `answer` makes of the reply.
    fn request<P: JsCast>(&self, request: Result<HttpRequest, SyncError>, answer: Answer) -> P {
        self.promise(request, answer).unchecked_into()
    }

    /// `request` for every promise type at once: one copy of the future in the download.
    #[inline(never)]
    fn promise(&self, request: Result<HttpRequest, SyncError>, answer: Answer) -> Promise {
        let request = match request {
            Ok(request) => request,
            Err(error) => return rejected(error),
        };
        let shared = Rc::downgrade(&self.shared);
        let transport = Rc::clone(&self.shared.transport);
        let work = async move {
            let reply = transport.send(request, 0, None).await;
            settle(&shared, reply, answer)
        };
        future_to_promise(async move { work.await.map_err(|e| js_error(&e)) })
    }
}

/// Applies a reply to the view and the queue as the core decides (when the `ChatSync` still
/// exists), carries out what it asks, and gives the value the promise resolves to.
fn settle(
    shared: &Weak<Shared>,
    reply: Result<Reply, SyncError>,
    answer: Answer,
) -> Result<JsValue, SyncError> {
    let (outcome, body) = match reply {
        Ok(Reply { status, body, .. }) => (session::read(&answer, status, &body), Some(body.0)),
        Err(error) => (Err(error), None),
    };
    let value = match shared.upgrade() {
        Some(s) => {
            let now = js_sys::Date::now();
            let settled =
                s.decide(|syncer, outbox| session::settle(syncer, outbox, &answer, outcome, now));
            s.carry_out(settled.commands);
            if let (true, Some(body)) = (settled.shown, &body) {
                s.hand_over(body);
            }
            if settled.replay {
                s.replay();
            }
            settled.value
        }
        None => outcome,
    };
    match value? {
        Answered::Summary(summary) => to_js(&summary),
        Answered::List(list) => to_js(&list),
        Answered::Raw => Ok(body.unwrap_or(JsValue::UNDEFINED)),
        Answered::Done | Answered::State(_) => Ok(JsValue::UNDEFINED),
    }
}

impl Shared {
    /// Runs one event through the syncer, carries out its commands and tells subscribers.
    fn update(self: &Rc<Self>, event: impl FnOnce(&mut Syncer) -> Vec<Command>) {
        let commands = event(&mut self.state.borrow_mut().syncer);
        self.carry_out(commands);
    }

    /// Runs a decision of the core over the view and the offline queue (read from storage
    /// first, written back after when it changed). The caller tells the subscribers.
    fn decide<T>(&self, decision: impl FnOnce(&mut Syncer, &mut Outbox) -> T) -> T {
        self.queue
            .change(|outbox| decision(&mut self.state.borrow_mut().syncer, outbox))
    }

    /// The part of `update` that does not depend on the event: one copy in the download
    /// instead of one per event (about 500 B gzipped).
    #[inline(never)]
    fn carry_out(self: &Rc<Self>, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::Fetch(poll) => self.poll(poll),
                Command::SetTimer { delay_ms } => {
                    let shared = Rc::downgrade(self);
                    let timer = Timeout::new(delay_ms, move || {
                        with_live(&shared, |s| {
                            s.state.borrow_mut().timer = None;
                            s.update(Syncer::timer_fired);
                        })
                    });
                    // Replacing the old timer cancels it.
                    self.state.borrow_mut().timer = Some(timer);
                }
                Command::CancelTimer => self.state.borrow_mut().timer = None,
                Command::AbortPoll => {
                    let controller = self.state.borrow_mut().poll_abort.take();
                    if let Some(controller) = controller {
                        controller.abort();
                    }
                }
                Command::AuthFailed(error) => {
                    if let Some(callback) = &self.on_auth_error {
                        call_listener(callback, &js_error(&error));
                    }
                }
            }
        }
        // After the commands: a tab polling alone starts its poll here, and must not have
        // it aborted by an older command of this batch.
        self.sync_tabs();
        self.notify();
    }

    fn poll(self: &Rc<Self>, poll: PollRequest) {
        let request = self.api.poll(&poll);
        let shared = Rc::downgrade(self);
        let controller = AbortController::new().ok();
        self.state.borrow_mut().poll_abort = controller.clone();
        let transport = Rc::clone(&self.transport);
        wasm_bindgen_futures::spawn_local(async move {
            let sent = transport.send(request, poll.wait_ms.unwrap_or(0), controller);
            let (outcome, body) = match sent.await {
                Ok(reply) => (
                    api::poll_outcome(reply.status, &reply.body, reply.retry_after.as_deref()),
                    Some(reply.body.0),
                ),
                Err(error) => (PollOutcome::Failed(error), None),
            };
            let reached = !matches!(outcome, PollOutcome::Failed(_));
            let handed = match &outcome {
                PollOutcome::State(_) => body,
                _ => None,
            };
            with_live(&shared, |s| {
                let now = js_sys::Date::now();
                s.update(|sync| sync.poll_finished(poll.ticket, outcome, now));
                if let Some(body) = &handed {
                    s.hand_over(body);
                }
                // The server answers again: sends kept while it could not be reached go.
                if reached {
                    s.replay();
                }
            });
        });
    }

    /// Takes part in the election for the chat this tab would poll (a visible, running
    /// chat), and leaves it otherwise, so a hidden or stopped tab never holds the lock
    /// while a visible one waits.
    fn sync_tabs(self: &Rc<Self>) {
        let wanted = self.state.borrow_mut().syncer.election();
        let current = self.tabs.borrow().as_ref().map(|(id, _)| id.clone());
        if wanted == current {
            return;
        }
        // Leaving first releases the lock (or gives up waiting for it).
        let left = self.tabs.borrow_mut().take();
        drop(left);
        self.state.borrow_mut().syncer.forget_other_tabs();
        let Some(id) = wanted else { return };
        let tabs = Tabs::join(self, &self.scope, &id);
        let alone = tabs.is_none();
        *self.tabs.borrow_mut() = Some((id.clone(), tabs));
        if alone {
            // The election could not start here: this tab polls (and replays) on its own.
            self.update(|sync| sync.lead(&id));
            self.replay();
        }
    }

    /// Shows the current context's queued sends (after a reload or a chat switch).
    pub(super) fn show_queued(self: &Rc<Self>) {
        self.decide(|syncer, outbox| session::show_queued(syncer, outbox));
        self.notify();
    }

    /// Sends the oldest queued send this tab may replay, if the queue says one may go now;
    /// each delivery triggers the next.
    fn replay(self: &Rc<Self>) {
        let online = navigator_online();
        let Some(next) = self.decide(|syncer, outbox| session::replay(syncer, outbox, online))
        else {
            return;
        };
        self.notify();
        let request = self
            .api
            .send_message(&next.context_id, &next.text, &next.client_message_id);
        let shared = Rc::downgrade(self);
        let transport = Rc::clone(&self.transport);
        let answer = Answer::Sent {
            client_message_id: next.client_message_id,
        };
        wasm_bindgen_futures::spawn_local(async move {
            let reply = transport.send(request, 0, None).await;
            // A replay has no promise: its outcome shows in the view.
            let _ = settle(&shared, reply, answer);
        });
    }

    fn hidden(&self) -> bool {
        self.document
            .as_ref()
            .is_some_and(|d| d.visibility_state() == VisibilityState::Hidden)
    }

    fn view_value(&self) -> JsValue {
        let mut state = self.state.borrow_mut();
        let view = state.syncer.view();
        state.view_to_js(view).0
    }

    /// Calls the subscribers when the view differs from the one they last saw. No borrow
    /// is held while they run, so a listener may call back into `ChatSync`.
    fn notify(&self) {
        self.tell_tabs();
        let (value, listeners) = {
            let mut state = self.state.borrow_mut();
            let view = state.syncer.view();
            if state.emitted.as_ref() == Some(&view) {
                return;
            }
            let (value, view) = state.view_to_js(view);
            state.emitted = Some(view);
            let listeners: Vec<Function> = state.listeners.iter().map(|(_, f)| f.clone()).collect();
            (value, listeners)
        };
        for listener in listeners {
            call_listener(&listener, &value);
        }
    }
}

impl State {
    /// The view as a JavaScript value whose unchanged messages are the objects handed out
    /// before; gives the view back for comparing with the next one.
    fn view_to_js(&mut self, mut view: ChatView) -> (JsValue, ChatView) {
        let messages = std::mem::take(&mut view.messages);
        let value = to_js(&view).unwrap_or(JsValue::NULL);
        let objects = js_sys::Array::new();
        let mut previous = std::mem::take(&mut self.message_objects).into_iter();
        for message in &messages {
            let object = match previous.next() {
                Some((old, object)) if old == *message => object,
                _ => to_js(message).unwrap_or(JsValue::NULL),
            };
            objects.push(&object);
            self.message_objects.push((message.clone(), object));
        }
        // Setting a field on the plain object just built cannot fail.
        let _ = js_sys::Reflect::set(&value, &"messages".into(), &objects);
        view.messages = messages;
        (value, view)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The listeners are freed with `self`; the browser must not call them afterwards.
        // (The timer cancels itself when the state drops; a held poll is aborted.)
        for (target, name, closure) in &self.events {
            // Removing a listener that is registered cannot fail.
            let _ =
                target.remove_event_listener_with_callback(name, closure.as_ref().unchecked_ref());
        }
        if let Some(controller) = self.state.get_mut().poll_abort.take() {
            controller.abort();
        }
    }
}

/// `navigator.onLine`; true where there is no such thing.
fn navigator_online() -> bool {
    js_sys::Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| js_sys::Reflect::get(&n, &"onLine".into()))
        .map_or(true, |v| v.as_bool() != Some(false))
}

/// Runs `f` if the `ChatSync` still exists; answers and timers may outlive it.
fn with_live(shared: &Weak<Shared>, f: impl FnOnce(&Rc<Shared>)) {
    if let Some(shared) = shared.upgrade() {
        f(&shared);
    }
}

/// A throwing listener must not keep the others from seeing the change; its error is
/// reported on the console like any uncaught error.
fn call_listener(listener: &Function, view: &JsValue) {
    if let Err(error) = listener.call1(&JsValue::UNDEFINED, view) {
        web_sys::console::error_2(&"ChatSync listener threw:".into(), &error);
    }
}

fn rejected<P: JsCast>(error: SyncError) -> P {
    js_sys::Promise::reject(&js_error(&error)).unchecked_into()
}

/// A real `Error` (with a stack) carrying the `SyncError` fields.
fn js_error(error: &SyncError) -> JsValue {
    let js = js_sys::Error::new(&error.message);
    js.set_name("SyncError");
    if let Ok(fields) = to_js(error) {
        // Copying plain data fields onto a fresh Error object cannot fail.
        let _ = js_sys::Object::assign(&js, &fields.unchecked_into());
    }
    js.into()
}
