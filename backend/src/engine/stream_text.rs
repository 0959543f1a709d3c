//! The text of a reply while it streams: appended in place, shared with snapshots.
//!
//! Every publish shares the message log with readers, so changing the reply message after
//! a publish would copy it whole (copy-on-write): each chunk after a publish would cost the
//! length of the reply so far. The streamed text lives here instead. The writer appends to
//! one buffer (amortized O(chunk)); a snapshot keeps the buffer and the length it saw
//! (O(1)), and the bytes before that length never change, because the writer only
//! appends.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

/// The writer's side: the one place the text grows.
#[derive(Debug)]
pub struct StreamText {
    buf: Arc<RwLock<String>>,
    len: usize,
    /// How much of the text the store is known to hold (see [`StreamText::mark_durable`]).
    durable: usize,
}

/// A reader's side: the text as it was when the snapshot was taken.
#[derive(Clone)]
pub struct TextPrefix {
    buf: Arc<RwLock<String>>,
    len: usize,
    durable: usize,
}

impl StreamText {
    /// Starts from the text the message already had.
    pub fn new(text: String) -> Self {
        let len = text.len();
        StreamText {
            buf: Arc::new(RwLock::new(text)),
            len,
            // Nothing is known to be stored until a save says so: a reader that must show
            // only durable text waits for that save.
            durable: 0,
        }
    }

    /// The store now holds the first `len` bytes of the text (a save wrote the text as it
    /// was then; chunks may have landed since, while the save ran behind the stream).
    pub fn mark_durable(&mut self, len: usize) {
        self.durable = self.durable.max(len.min(self.len));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push_str(&mut self, chunk: &str) {
        // A snapshot copying its prefix holds the read lock only for that copy.
        let mut text = self.buf.write().unwrap_or_else(PoisonError::into_inner);
        text.push_str(chunk);
        self.len = text.len();
    }

    /// A copy of the text so far.
    pub fn to_text(&self) -> String {
        read_prefix(&self.buf, self.len)
    }

    /// The text so far, for a snapshot: no copy.
    pub fn prefix(&self) -> TextPrefix {
        TextPrefix {
            buf: self.buf.clone(),
            len: self.len,
            durable: self.durable.min(self.len),
        }
    }

    /// The whole text, once the stream is over: moved out when no snapshot still shares
    /// it, else copied once.
    pub fn into_string(self) -> String {
        match Arc::try_unwrap(self.buf) {
            Ok(lock) => lock.into_inner().unwrap_or_else(PoisonError::into_inner),
            Err(shared) => read_prefix(&shared, self.len),
        }
    }
}

impl TextPrefix {
    pub fn to_text(&self) -> String {
        read_prefix(&self.buf, self.len)
    }

    /// The part of the text the store held when the snapshot was taken.
    pub fn durable_text(&self) -> String {
        read_prefix(&self.buf, self.durable)
    }
}

impl fmt::Debug for TextPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextPrefix")
            .field("len", &self.len)
            .field("durable", &self.durable)
            .finish()
    }
}

fn read_prefix(buf: &RwLock<String>, len: usize) -> String {
    let text = buf.read().unwrap_or_else(PoisonError::into_inner);
    // The writer only appends, and whole chunks (`&str`), so `len` is a char boundary.
    text.get(..len).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_keeps_the_text_it_saw_while_the_writer_appends() {
        let mut text = StreamText::new("Hé".into());
        let first = text.prefix();
        text.push_str(", wörld");
        let second = text.prefix();
        text.push_str("!");
        assert_eq!(first.to_text(), "Hé");
        assert_eq!(second.to_text(), "Hé, wörld");
        assert_eq!(text.len(), "Hé, wörld!".len());
        assert_eq!(text.into_string(), "Hé, wörld!");
        assert_eq!(second.to_text(), "Hé, wörld", "outlives the writer");
    }

    #[test]
    fn only_text_marked_durable_is_durable() {
        let mut text = StreamText::new(String::new());
        text.push_str("saved ");
        assert_eq!(
            text.prefix().durable_text(),
            "",
            "nothing is durable before a save"
        );
        let saved = text.len();
        text.push_str("shown only");
        text.mark_durable(saved);
        let prefix = text.prefix();
        assert_eq!(prefix.to_text(), "saved shown only");
        assert_eq!(prefix.durable_text(), "saved ");
    }

    #[test]
    fn appending_does_not_copy_what_a_snapshot_shares() {
        let mut text = StreamText::new(String::with_capacity(1 << 16));
        text.push_str("a");
        let before = text.buf.read().expect("lock").as_ptr();
        let _snapshot = text.prefix();
        text.push_str("b");
        // The same buffer, grown in place: a copy-on-write would have moved it.
        assert_eq!(text.buf.read().expect("lock").as_ptr(), before);
        assert_eq!(text.into_string(), "ab");
    }

    #[test]
    fn the_text_moves_out_when_no_snapshot_shares_it() {
        let mut text = StreamText::new(String::new());
        text.push_str("reply");
        let at = text.buf.read().expect("lock").as_ptr();
        let whole = text.into_string();
        assert_eq!(whole.as_ptr(), at, "moved, not copied");
    }
}
