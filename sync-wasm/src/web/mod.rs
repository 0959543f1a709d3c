//! The browser shell: the `ChatSync` class JavaScript uses.
//!
//! It owns the things the pure core cannot: the one timer, `fetch`, the
//! `visibilitychange` listener, the subscribers and the conversion to JavaScript values.
//! Every event goes to the [`Syncer`], and the commands it answers are carried out here.

mod http;

use std::cell::RefCell;
use std::future::Future;
use std::rc::{Rc, Weak};

use chatsync_protocol::{ChatState, ContextSummary, ListContextsResponse};
use js_sys::Function;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;
use web_sys::{Document, VisibilityState};

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
    /// Called by the timer; holds only a weak reference back, so dropping `ChatSync`
    /// frees everything.
    tick: Closure<dyn FnMut()>,
    on_visibility: Closure<dyn FnMut()>,
    document: Option<Document>,
}

struct State {
    syncer: Syncer,
    listeners: Vec<(u32, Function)>,
    last_listener: u32,
    timer: Option<JsValue>,
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
            let tick_target = weak.clone();
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
                tick: Closure::new(move || {
                    with_live(&tick_target, |s| {
                        s.state.borrow_mut().timer = None;
                        s.update(Syncer::timer_fired);
                    })
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
                .map_err(|e| js_error(&SyncError::invalid(format!("{e:?}"))))?;
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
            let created_at = String::from(js_sys::Date::new_0().to_iso_string());
            self.shared.state.borrow_mut().syncer.chat_mut().add_local(
                client_id.clone(),
                text.clone(),
                created_at,
            );
            self.shared.notify();
            Ok((context, client_id))
        });
        match prepared {
            Ok((context, client_id)) => self.deliver(context, client_id, text),
            Err(error) => rejected(error),
        }
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
        match prepared {
            Ok((context, text)) => self.deliver(context, id, text),
            Err(error) => rejected(error),
        }
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

    #[wasm_bindgen(js_name = createContext)]
    pub fn create_context(
        &self,
        options: Option<CreateContextOptionsArg>,
    ) -> PromiseContextSummary {
        let request = optional_from_js::<CreateContextOptions>(
            options.map(Into::into),
            "createContext options",
        )
        .map(|o| self.shared.api.create_context(&o.into()));
        self.fetch_value(request, |summary: ContextSummary| {
            ContextSummaryView::from(summary)
        })
    }

    #[wasm_bindgen(js_name = listContexts)]
    pub fn list_contexts(&self, options: Option<ListContextsOptionsArg>) -> PromiseContextList {
        let request =
            optional_from_js::<ListOptions>(options.map(Into::into), "listContexts options")
                .map(|o| self.shared.api.list_contexts(o.limit, o.cursor.as_deref()));
        self.fetch_value(request, |list: ListContextsResponse| {
            ContextListView::from(list)
        })
    }

    /// Deletes a context; when it is the current one, polling it stops.
    #[wasm_bindgen(js_name = deleteContext)]
    pub fn delete_context(&self, id: String) -> PromiseVoid {
        let shared = Rc::downgrade(&self.shared);
        let request = self.shared.api.delete_context(&id);
        let headers = self.shared.headers.clone();
        promise(async move {
            let (status, body) = http::send(&headers, request).await?;
            let outcome = api::expect_success(status, &body);
            let gone = outcome
                .as_ref()
                .err()
                .is_none_or(|e| e.kind == ErrorKind::Deleted);
            with_live(&shared, |s| {
                let current = s.state.borrow().syncer.context_id() == Some(id.as_str());
                if gone && current {
                    s.update(|sync| sync.context_deleted(None));
                }
            });
            outcome.map(|()| JsValue::UNDEFINED)
        })
    }

    /// One `GET /state` of the current context, answered as the server sent it.
    #[wasm_bindgen(js_name = getChatState)]
    pub fn get_chat_state(&self) -> PromiseUnknown {
        let request = self
            .current_context()
            .map(|context| self.shared.api.state(&context));
        self.fetch_value(request, |raw: serde_json::Value| raw)
    }
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

    /// Sends a local message; a failure marks it failed before the promise rejects.
    fn deliver(&self, context: String, client_id: String, text: String) -> PromiseVoid {
        let request = self.shared.api.send_message(&context, &text, &client_id);
        let shared = Rc::downgrade(&self.shared);
        let headers = self.shared.headers.clone();
        promise(async move {
            let outcome = run_action(&shared, &headers, request).await;
            if let Err(error) = &outcome {
                with_live(&shared, |s| {
                    let failed = s
                        .state
                        .borrow_mut()
                        .syncer
                        .chat_mut()
                        .fail_local(&client_id, error.message.clone());
                    if failed {
                        s.notify();
                    }
                });
            }
            outcome.map(|()| JsValue::UNDEFINED)
        })
    }

    /// An action on the current context whose answer is the context's state.
    fn action(&self, build: impl FnOnce(&Api, &str) -> HttpRequest) -> PromiseVoid {
        let request = match self.current_context() {
            Ok(context) => build(&self.shared.api, &context),
            Err(error) => return rejected(error),
        };
        let shared = Rc::downgrade(&self.shared);
        let headers = self.shared.headers.clone();
        promise(async move {
            run_action(&shared, &headers, request).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// A request whose JSON answer `T` is handed to JavaScript as `V`.
    fn fetch_value<T, V, P>(
        &self,
        request: Result<HttpRequest, SyncError>,
        convert: impl FnOnce(T) -> V + 'static,
    ) -> P
    where
        T: DeserializeOwned,
        V: Serialize,
        P: JsCast,
    {
        let request = match request {
            Ok(request) => request,
            Err(error) => return rejected(error),
        };
        let headers = self.shared.headers.clone();
        promise(async move {
            let (status, body) = http::send(&headers, request).await?;
            let value = api::decode::<T>(status, &body)?;
            to_js(&convert(value))
        })
    }
}

/// Sends an action and shows the state it answers with. A 404 means the context is gone.
async fn run_action(
    shared: &Weak<Shared>,
    headers: &[(String, String)],
    request: HttpRequest,
) -> Result<(), SyncError> {
    let (status, body) = http::send(headers, request).await?;
    let answer = api::decode::<ChatState>(status, &body);
    with_live(shared, |s| match &answer {
        Ok(state) => {
            let now = js_sys::Date::now();
            let state = state.clone();
            s.update(|sync| sync.action_answered(state, now));
        }
        Err(error) if error.kind == ErrorKind::Deleted => {
            let error = error.clone();
            s.update(|sync| sync.context_deleted(Some(error)));
        }
        Err(_) => {}
    });
    answer.map(|_| ())
}

impl Shared {
    /// Runs one event through the syncer, carries out its commands and tells subscribers.
    fn update(self: &Rc<Self>, event: impl FnOnce(&mut Syncer) -> Vec<Command>) {
        let commands = event(&mut self.state.borrow_mut().syncer);
        for command in commands {
            match command {
                Command::Fetch(poll) => self.poll(poll),
                Command::SetTimer { delay_ms } => {
                    self.clear_timer();
                    let ms = i32::try_from(delay_ms).unwrap_or(i32::MAX);
                    let handle = http::set_timeout(self.tick.as_ref(), ms);
                    self.state.borrow_mut().timer = Some(handle);
                }
                Command::CancelTimer => self.clear_timer(),
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

    fn clear_timer(&self) {
        if let Some(handle) = self.state.borrow_mut().timer.take() {
            http::clear_timeout(&handle);
        }
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
        // Both closures are freed with `self`; the browser must not call them afterwards.
        self.clear_timer();
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

fn promise<P: JsCast>(work: impl Future<Output = Result<JsValue, SyncError>> + 'static) -> P {
    future_to_promise(async move { work.await.map_err(|e| js_error(&e)) }).unchecked_into()
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

/// Values cross into JavaScript as JSON: the view types are plain data, and one JSON
/// codec (already needed for the wire) keeps the module smaller than a second serializer.
fn to_js<T: Serialize>(value: &T) -> Result<JsValue, SyncError> {
    let json = serde_json::to_string(value).map_err(|e| SyncError::invalid(e.to_string()))?;
    js_sys::JSON::parse(&json).map_err(|_| SyncError::invalid("unreadable value"))
}

/// Reads an optional options object; missing means every option at its default.
fn optional_from_js<T: DeserializeOwned + Default>(
    value: Option<JsValue>,
    what: &str,
) -> Result<T, SyncError> {
    value.map_or_else(|| Ok(T::default()), |v| from_js(v, what))
}

/// Reads an options object. It goes through JSON because serde-wasm-bindgen never looks at
/// keys a struct does not name, and a misspelt option must be reported, not ignored.
fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T, SyncError> {
    let json = js_sys::JSON::stringify(&value)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| SyncError::invalid(format!("{what} must be an object")))?;
    serde_json::from_str(&json).map_err(|e| SyncError::invalid(format!("{what}: {e}")))
}
