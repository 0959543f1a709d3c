//! The offline queue's storage: the core's [`Outbox`] decides, this only reads and writes
//! `localStorage`. Each operation reads the stored entries first, since another tab (or
//! another `ChatSync` on the page) may have changed them, and writes them back after.

use std::cell::RefCell;

use wasm_bindgen::JsValue;
use web_sys::{Storage, Window};

use super::convert::{from_js, to_js};
use crate::core::outbox::{Outbox, Queued};

pub struct Stored {
    outbox: RefCell<Outbox>,
    /// None where storage is unavailable (disabled, private mode): the queue then lives as
    /// long as the page.
    storage: Option<Storage>,
    key: String,
}

impl Stored {
    pub fn open(window: Option<&Window>, scope: &str) -> Self {
        let storage = window.and_then(|w| w.local_storage().ok().flatten());
        let stored = Stored {
            outbox: RefCell::default(),
            storage,
            key: ["chatsync-queue:", scope].concat(),
        };
        *stored.outbox.borrow_mut() = Outbox::restore(stored.read());
        stored
    }

    /// Runs `f` on the queue as stored now (another tab may have changed it) and writes it
    /// back when it changed.
    pub fn change<T>(&self, f: impl FnOnce(&mut Outbox) -> T) -> T {
        let mut outbox = self.outbox.borrow_mut();
        outbox.reload(self.read());
        let before = outbox.entries().to_vec();
        let result = f(&mut outbox);
        if outbox.entries() != before.as_slice() {
            self.write(outbox.entries());
        }
        result
    }

    /// The stored entries; anything unreadable counts as an empty queue.
    fn read(&self) -> Vec<Queued> {
        let Some(text) = self
            .storage
            .as_ref()
            .and_then(|s| s.get_item(&self.key).ok().flatten())
        else {
            return Vec::new();
        };
        js_sys::JSON::parse(&text)
            .ok()
            .and_then(|value| from_js(value, "queue").ok())
            .unwrap_or_default()
    }

    fn write(&self, entries: &[Queued]) {
        let Some(storage) = &self.storage else { return };
        let text = to_js(&entries)
            .ok()
            .and_then(|value| js_sys::JSON::stringify(&value).ok())
            .map(String::from);
        // A write refused (quota) leaves the queue in memory, still bounded.
        let _: Result<(), JsValue> = match text {
            Some(text) if !entries.is_empty() => storage.set_item(&self.key, &text),
            _ => storage.remove_item(&self.key),
        };
    }
}
