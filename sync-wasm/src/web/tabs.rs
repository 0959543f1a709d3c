//! One poller per chat per browser. Tabs on the same (base URL, chat) ask the Web Locks API
//! for one exclusive lock; the tab holding it leads: it polls and hands every state it
//! shows to the others over a `BroadcastChannel`. The others follow: they do not poll and
//! show what they are handed. Closing the leader releases its lock, and the browser gives
//! it to a waiting tab, which starts polling from the version it was handed. Where either
//! API is missing every tab polls on its own.
//!
//! Every tab also tells the others (`{tab, sent}`) which of its messages the server has
//! not shown yet, whenever that changes, when a tab joins, and (empty) when it leaves, so
//! a message sent in one tab shows at once in all of them, pending or failed.
//!
//! Web Locks are behind web-sys's unstable flag, so they are called through `Reflect`.

use std::rc::{Rc, Weak};

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, BroadcastChannel, MessageEvent};

use super::convert::{from_js, to_js};
use super::{get_random_values, with_live, Shared};
use crate::core::outbox::Queued;
use crate::core::reconcile::new_client_message_id;
use crate::core::syncer::Syncer;

/// What a tab that joins asks for: the leader answers with the whole state.
const HELLO: &str = "hello";

pub struct Tabs {
    /// This tab's name on the channel, random.
    id: String,
    /// What this tab last told the others it sent and the server has not shown.
    told: std::cell::RefCell<Vec<Queued>>,
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_granted: Closure<dyn FnMut(JsValue) -> Promise>,
    /// Gives up a lock not granted yet.
    abort: AbortController,
    /// Resolves the promise the lock is held with, which releases it; set once leading.
    release: Rc<std::cell::RefCell<Option<Function>>>,
}

impl Tabs {
    /// Whether this browser can elect: Web Locks and `BroadcastChannel` both exist.
    pub fn supported() -> bool {
        let global = js_sys::global();
        let locks = Reflect::get(&global, &"navigator".into())
            .and_then(|n| Reflect::get(&n, &"locks".into()))
            .is_ok_and(|l| l.is_object());
        locks && Reflect::has(&global, &"BroadcastChannel".into()).unwrap_or(false)
    }

    /// Joins the tabs on `context_id`; None where the browser lacks the APIs, and this tab
    /// then polls alone.
    pub fn join(shared: &Rc<Shared>, scope: &str, context_id: &str) -> Option<Tabs> {
        let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
        let locks = Reflect::get(&navigator, &"locks".into()).ok()?;
        let request: Function = Reflect::get(&locks, &"request".into())
            .ok()?
            .dyn_into()
            .ok()?;
        let name = ["chatsync:", scope, ":", context_id].concat();
        let channel = BroadcastChannel::new(&name).ok()?;
        let abort = AbortController::new().ok()?;

        let weak = Rc::downgrade(shared);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            with_live(&weak, |s| s.tab_message(event.data()));
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));

        let release = Rc::new(std::cell::RefCell::new(None));
        let weak: Weak<Shared> = Rc::downgrade(shared);
        let held = Rc::clone(&release);
        let context = context_id.to_owned();
        let on_granted = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |_lock: JsValue| {
            // Held while this promise is pending: resolving it gives the lock up.
            let promise = Promise::new(&mut |resolve, _| *held.borrow_mut() = Some(resolve));
            with_live(&weak, |s| {
                s.update(|sync| sync.lead(&context));
                // The leader replays the chat's queued sends, the others' too (shown here
                // from now on); the others leave them to it.
                s.show_queued();
                s.replay();
            });
            promise
        });
        let options = js_sys::Object::new();
        // Setting fields on a fresh plain object cannot fail.
        let _ = Reflect::set(&options, &"mode".into(), &"exclusive".into());
        let _ = Reflect::set(&options, &"signal".into(), &abort.signal());
        let pending = request
            .call3(&locks, &name.into(), &options, on_granted.as_ref())
            .ok()?;
        // Giving up a lock not granted yet rejects this promise; that is expected.
        if let Ok(pending) = pending.dyn_into::<Promise>() {
            let ignore = Closure::<dyn FnMut(JsValue)>::new(|_| {});
            let _ = pending.catch(&ignore);
            ignore.forget();
        }
        let _ = channel.post_message(&HELLO.into());
        let mut random = [0u8; 16];
        get_random_values(&mut random);
        Some(Tabs {
            id: new_client_message_id(random),
            told: Default::default(),
            channel,
            _on_message: on_message,
            _on_granted: on_granted,
            abort,
            release,
        })
    }

    pub fn leading(&self) -> bool {
        self.release.borrow().is_some()
    }

    fn post(&self, message: &JsValue) {
        // Posting plain data to an open channel cannot fail.
        let _ = self.channel.post_message(message);
    }

    /// Tells the other tabs what this one sent that the server has not shown, if that
    /// changed since it last told them.
    fn tell(&self, sent: Vec<Queued>) {
        if *self.told.borrow() == sent {
            return;
        }
        let message = js_sys::Object::new();
        let _ = Reflect::set(&message, &"tab".into(), &self.id.as_str().into());
        let _ = Reflect::set(
            &message,
            &"sent".into(),
            &to_js(&sent.as_slice()).unwrap_or_default(),
        );
        self.post(&message);
        *self.told.borrow_mut() = sent;
    }
}

impl Drop for Tabs {
    fn drop(&mut self) {
        // The others stop showing this tab's messages; the queue still holds its unsent ones.
        self.tell(Vec::new());
        self.abort.abort();
        if let Some(release) = self.release.borrow_mut().take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

impl Shared {
    /// Hands a state the server answered this tab (the JSON body as the browser parsed it:
    /// no copy is built) to the other tabs: the leader's polls, any tab's actions.
    pub(super) fn hand_over(&self, body: &JsValue) {
        if let Some((_, Some(tabs))) = self.tabs.borrow().as_ref() {
            tabs.post(body);
        }
    }

    /// Tells the other tabs this one's unsent messages when they changed.
    pub(super) fn tell_tabs(&self) {
        if let Some((_, Some(tabs))) = self.tabs.borrow().as_ref() {
            tabs.tell(self.state.borrow().syncer.chat().shared_locals());
        }
    }

    fn tab_message(self: &Rc<Self>, data: JsValue) {
        let leading = matches!(self.tabs.borrow().as_ref(), Some((_, Some(t))) if t.leading());
        if data.as_string().as_deref() == Some(HELLO) {
            // A tab joined, or missed a change: the next poll asks for the whole state,
            // which every follower then gets; and it learns every tab's unsent messages.
            if leading {
                self.update(Syncer::refetch);
            }
            if let Some((_, Some(tabs))) = self.tabs.borrow().as_ref() {
                tabs.told.borrow_mut().clear();
            }
            self.tell_tabs();
            return;
        }
        if let Some(tab) = Reflect::get(&data, &"tab".into())
            .ok()
            .and_then(|t| t.as_string())
        {
            let sent = Reflect::get(&data, &"sent".into())
                .ok()
                .and_then(|v| from_js::<Vec<Queued>>(v, "queue").ok())
                .unwrap_or_default();
            if self.state.borrow_mut().syncer.others_sent(&tab, sent) {
                self.notify();
            }
            return;
        }
        let Ok(state) = from_js(data, "shared state") else {
            return;
        };
        let out_of_step = self.state.borrow_mut().syncer.shared_state(state);
        self.notify();
        if out_of_step && leading {
            // Another tab's action answer did not fit: the leader fetches it all.
            self.update(Syncer::refetch);
        } else if out_of_step {
            if let Some((_, Some(tabs))) = self.tabs.borrow().as_ref() {
                tabs.post(&HELLO.into());
            }
        }
    }
}
