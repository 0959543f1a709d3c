//! The browser shell: the `ChatSync` class JavaScript uses.
//!
//! It owns the things the pure core cannot: the one timer, `fetch`, the
//! `visibilitychange` listener, the subscribers and the conversion to JavaScript values.
//! Every event goes to the [`Syncer`], and the commands it answers are carried out here.

mod convert;
mod de;
mod http;
mod ser;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use chatsync_protocol::{ChatState, ContextSummary, ListContextsResponse};
use gloo_timers::callback::Timeout;
use js_sys::Function;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;
use web_sys::{Document, VisibilityState};

use self::convert::{describe, from_js, optional_from_js, to_js, JsBody};
use crate::core::api::{self, Api, BareAction, HttpRequest};
use crate::core::options::ChatSyncOptions;
use crate::core::reconcile::new_client_message_id;
use crate::core::syncer::{Command, PollRequest, Syncer};
use crate::core::view::{
    ChatView, ContextListView, ContextSummaryView, CreateContextOptions, ErrorKind, ListOptions,
    SyncError,
};

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
    headers: Vec<(String, String)>,
    state: RefCell<State>,
    /// Holds only a weak reference back, like the timer's callback, so dropping
    /// `ChatSync` frees everything.
    on_visibility: Closure<dyn FnMut()>,
    document: Option<Document>,
}

struct State {
    syncer: Syncer,
    listeners: Vec<(u32, Function)>,
    last_listener: u32,
    /// The one poll timer; dropping it cancels it.
    timer: Option<Timeout>,
    emitted: Option<ChatView>,
}

#[wasm_bindgen]
impl ChatSync {
    #[wasm_bindgen(constructor)]
    pub fn new(options: ChatSyncOptionsArg) -> Result<ChatSync, JsValue> {
        let options: ChatSyncOptions =
            from_js(options.into(), "options").map_err(|e| js_error(&e))?;
        let config = options.config().map_err(|e| js_error(&e))?;
        let document = js_sys::global()
            .dyn_into::<web_sys::Window>()
            .ok()
            .and_then(|w| w.document());
        let shared = Rc::new_cyclic(|weak: &Weak<Shared>| {
            let visibility_target = weak.clone();
            Shared {
                api: Api::new(&options.base_url),
                headers: options
                    .headers
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                state: RefCell::new(State {
                    syncer: Syncer::new(config, options.context_id.clone()),
                    listeners: Vec::new(),
                    last_listener: 0,
                    timer: None,
                    emitted: None,
                }),
                on_visibility: Closure::new(move || {
                    with_live(&visibility_target, |s| {
                        let hidden = s.hidden();
                        s.update(|sync| sync.set_hidden(hidden));
                    })
                }),
                document,
            }
        });
        if let Some(document) = &shared.document {
            document
                .add_event_listener_with_callback(
                    "visibilitychange",
                    shared.on_visibility.as_ref().unchecked_ref(),
                )
                .map_err(|e| js_error(&SyncError::invalid(describe(&e))))?;
            let hidden = shared.hidden();
            shared.update(|sync| sync.set_hidden(hidden));
        }
        Ok(ChatSync { shared })
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

    pub fn start(&self) {
        self.shared.update(Syncer::start);
    }

    pub fn stop(&self) {
        self.shared.update(Syncer::stop);
    }

    #[wasm_bindgen(js_name = setContext)]
    pub fn set_context(&self, id: Option<String>) {
        self.shared.update(|sync| sync.set_context(id));
    }

    /// Shows the message at once as pending, then sends it. On failure the message stays,
    /// marked failed, and the promise rejects with a `SyncError`.
    #[wasm_bindgen(js_name = sendMessage)]
    pub fn send_message(&self, text: String) -> PromiseVoid {
        let prepared = self.current_context().and_then(|context| {
            if text.trim().is_empty() {
                return Err(SyncError::invalid("a message needs some text"));
            }
            let mut random = [0u8; 16];
            get_random_values(&mut random);
            let client_id = new_client_message_id(random);
            // An ISO string is what the server sends too; this reads it as whichever type
            // `Timestamp` is in this build, and only a broken `Date` could fail.
            let created_at = String::from(js_sys::Date::new_0().to_iso_string())
                .parse()
                .unwrap_or_default();
            self.shared.state.borrow_mut().syncer.chat_mut().add_local(
                client_id.clone(),
                text.clone(),
                created_at,
            );
            self.shared.notify();
            Ok((context, client_id))
        });
        self.deliver(prepared.map(|(context, client_id)| (context, client_id, text)))
    }

    /// Re-sends a failed message with its original `client_message_id`, so the server
    /// stores it at most once even if the first attempt did reach it.
    #[wasm_bindgen(js_name = retryMessage)]
    pub fn retry_message(&self, id: String) -> PromiseVoid {
        let prepared = self.current_context().and_then(|context| {
            let text = self
                .shared
                .state
                .borrow_mut()
                .syncer
                .chat_mut()
                .resend_local(&id)
                .ok_or_else(|| SyncError::invalid("no failed message with that id"))?;
            self.shared.notify();
            Ok((context, text))
        });
        self.deliver(prepared.map(|(context, text)| (context, id, text)))
    }

    /// Drops a failed message; does nothing for any other id.
    #[wasm_bindgen(js_name = discardMessage)]
    pub fn discard_message(&self, id: String) {
        let discarded = self
            .shared
            .state
            .borrow_mut()
            .syncer
            .chat_mut()
            .discard_local(&id);
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

/// What a request's answer is for; every promise this class returns is one request.
enum Answer {
    /// An action on the current context: the state it answers with is shown at once.
    State,
    /// A message send: like `State`, but a failure marks the local message failed.
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

impl ChatSync {
    fn current_context(&self) -> Result<String, SyncError> {
        self.shared
            .state
            .borrow()
            .syncer
            .context_id()
            .map(str::to_owned)
            .ok_or_else(|| SyncError::invalid("no context selected"))
    }

    /// Sends a local message: context, client message id and text.
    fn deliver(&self, prepared: Result<(String, String, String), SyncError>) -> PromiseVoid {
        let request = prepared.map(|(context, client_id, text)| {
            let request = self.shared.api.send_message(&context, &text, &client_id);
            (request, client_id)
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
        let request = match request {
            Ok(request) => request,
            Err(error) => return rejected(error),
        };
        let shared = Rc::downgrade(&self.shared);
        let headers = self.shared.headers.clone();
        let work = async move {
            let reply = http::send(&headers, request).await;
            settle(&shared, reply, answer)
        };
        future_to_promise(async move { work.await.map_err(|e| js_error(&e)) }).unchecked_into()
    }
}

/// Applies a reply to the view as `answer` says, and gives the value the promise resolves
/// to.
fn settle(
    shared: &Weak<Shared>,
    reply: Result<(u16, JsBody), SyncError>,
    answer: Answer,
) -> Result<JsValue, SyncError> {
    let outcome = reply.and_then(|(status, body)| match &answer {
        Answer::State | Answer::Sent { .. } => {
            let state = api::decode::<ChatState>(status, &body)?;
            with_live(shared, |s| {
                let now = js_sys::Date::now();
                s.update(|sync| sync.action_answered(state, now));
            });
            Ok(JsValue::UNDEFINED)
        }
        Answer::Deleted { .. } => api::expect_success(status, &body).map(|()| JsValue::UNDEFINED),
        Answer::Summary => to_js(&ContextSummaryView::from(api::decode::<ContextSummary>(
            status, &body,
        )?)),
        Answer::List => to_js(&ContextListView::from(api::decode::<ListContextsResponse>(
            status, &body,
        )?)),
        Answer::Raw => api::expect_success(status, &body).map(|()| body.0),
    });
    let gone = outcome
        .as_ref()
        .err()
        .is_some_and(|e| e.kind == ErrorKind::Deleted);
    with_live(shared, |s| {
        match (&answer, &outcome) {
            // A 404 to an action means the context is gone.
            (Answer::State | Answer::Sent { .. }, Err(error)) if gone => {
                s.update(|sync| sync.context_deleted(Some(error.clone())));
            }
            (Answer::Deleted { context_id }, _) if outcome.is_ok() || gone => {
                let current = s.state.borrow().syncer.context_id() == Some(context_id.as_str());
                if current {
                    s.update(|sync| sync.context_deleted(None));
                }
            }
            _ => {}
        }
        if let (Answer::Sent { client_message_id }, Err(error)) = (&answer, &outcome) {
            let failed = s
                .state
                .borrow_mut()
                .syncer
                .chat_mut()
                .fail_local(client_message_id, error.message.clone());
            if failed {
                s.notify();
            }
        }
    });
    outcome
}

impl Shared {
    /// Runs one event through the syncer, carries out its commands and tells subscribers.
    fn update(self: &Rc<Self>, event: impl FnOnce(&mut Syncer) -> Vec<Command>) {
        let commands = event(&mut self.state.borrow_mut().syncer);
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
            }
        }
        self.notify();
    }

    fn poll(self: &Rc<Self>, poll: PollRequest) {
        let request = self.api.poll(&poll);
        let headers = self.headers.clone();
        let shared = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            let outcome = match http::send(&headers, request).await {
                Ok((status, body)) => api::poll_outcome(status, &body),
                Err(error) => crate::core::syncer::PollOutcome::Failed(error),
            };
            with_live(&shared, |s| {
                let now = js_sys::Date::now();
                s.update(|sync| sync.poll_finished(poll.ticket, outcome, now));
            });
        });
    }

    fn hidden(&self) -> bool {
        self.document
            .as_ref()
            .is_some_and(|d| d.visibility_state() == VisibilityState::Hidden)
    }

    fn view_value(&self) -> JsValue {
        let view = self.state.borrow().syncer.view();
        to_js(&view).unwrap_or(JsValue::NULL)
    }

    /// Calls the subscribers when the view differs from the one they last saw. No borrow
    /// is held while they run, so a listener may call back into `ChatSync`.
    fn notify(&self) {
        let (value, listeners) = {
            let mut state = self.state.borrow_mut();
            let view = state.syncer.view();
            if state.emitted.as_ref() == Some(&view) {
                return;
            }
            let value = to_js(&view).unwrap_or(JsValue::NULL);
            state.emitted = Some(view);
            let listeners: Vec<Function> = state.listeners.iter().map(|(_, f)| f.clone()).collect();
            (value, listeners)
        };
        for listener in listeners {
            call_listener(&listener, &value);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The listener is freed with `self`; the browser must not call it afterwards. (The
        // timer cancels itself when the state drops.)
        if let Some(document) = &self.document {
            // Removing a listener that is registered cannot fail.
            let _ = document.remove_event_listener_with_callback(
                "visibilitychange",
                self.on_visibility.as_ref().unchecked_ref(),
            );
        }
    }
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
