//! The message history as a chunked, structurally shared vector.
//!
//! Every change publishes a snapshot, and a long history must not make that expensive:
//! cloning a `MessageLog` copies one pointer per block of messages, and changing a message
//! copies only its block (when a snapshot still shares it).

use chatsync_protocol::Message;
use std::ops::Index;
use std::sync::Arc;

const BLOCK: usize = 64;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageLog {
    blocks: Vec<Arc<Vec<Arc<Message>>>>,
    len: usize,
}

impl MessageLog {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, index: usize) -> Option<&Arc<Message>> {
        (index < self.len).then(|| &self.blocks[index / BLOCK][index % BLOCK])
    }

    pub fn last(&self) -> Option<&Arc<Message>> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    pub fn push(&mut self, message: Arc<Message>) {
        if self.len % BLOCK == 0 {
            self.blocks.push(Arc::new(Vec::with_capacity(BLOCK)));
        }
        if let Some(block) = self.blocks.last_mut() {
            Arc::make_mut(block).push(message);
            self.len += 1;
        }
    }

    /// Mutable access to one message, copying only what a snapshot still shares.
    ///
    /// Panics when `index` is out of bounds, like slice indexing.
    pub fn make_mut(&mut self, index: usize) -> &mut Message {
        assert!(index < self.len, "message {index} of {}", self.len);
        let block = Arc::make_mut(&mut self.blocks[index / BLOCK]);
        Arc::make_mut(&mut block[index % BLOCK])
    }

    /// Replaces one message, copying only what a snapshot still shares.
    pub fn set(&mut self, index: usize, message: Arc<Message>) {
        assert!(index < self.len, "message {index} of {}", self.len);
        Arc::make_mut(&mut self.blocks[index / BLOCK])[index % BLOCK] = message;
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Arc<Message>> + ExactSizeIterator {
        (0..self.len).map(move |i| &self.blocks[i / BLOCK][i % BLOCK])
    }

    pub fn to_vec(&self) -> Vec<Arc<Message>> {
        self.iter().cloned().collect()
    }
}

impl Index<usize> for MessageLog {
    type Output = Arc<Message>;

    fn index(&self, index: usize) -> &Arc<Message> {
        match self.get(index) {
            Some(m) => m,
            None => panic!("message {index} of {}", self.len),
        }
    }
}

impl FromIterator<Arc<Message>> for MessageLog {
    fn from_iter<I: IntoIterator<Item = Arc<Message>>>(iter: I) -> Self {
        let mut log = MessageLog::default();
        for m in iter {
            log.push(m);
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::new_message;
    use chatsync_protocol::{content_text, ContentPart, Role};

    fn log_of(n: usize) -> MessageLog {
        (0..n)
            .map(|i| {
                Arc::new(new_message(
                    Role::User,
                    vec![ContentPart::text(i.to_string())],
                    None,
                ))
            })
            .collect()
    }

    #[test]
    fn behaves_like_a_vector_across_blocks() {
        for n in [0, 1, 63, 64, 65, 200] {
            let log = log_of(n);
            assert_eq!(log.len(), n);
            let texts: Vec<String> = log.iter().map(|m| content_text(&m.content)).collect();
            let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            assert_eq!(texts, want);
            assert_eq!(log.iter().rev().count(), n);
            assert_eq!(
                log.last().map(|m| content_text(&m.content)),
                want.last().cloned()
            );
            assert!(log.get(n).is_none());
        }
    }

    #[test]
    fn a_snapshot_keeps_its_view_while_the_log_changes() {
        let mut log = log_of(130);
        let snapshot = log.clone();
        log.make_mut(70).content = vec![ContentPart::text("edited")];
        log.push(Arc::new(new_message(Role::Assistant, vec![], None)));
        assert_eq!(content_text(&snapshot[70].content), "70");
        assert_eq!(content_text(&log[70].content), "edited");
        assert_eq!((snapshot.len(), log.len()), (130, 131));
        // Untouched blocks stay shared.
        assert!(Arc::ptr_eq(&snapshot.blocks[0], &log.blocks[0]));
        assert!(!Arc::ptr_eq(&snapshot.blocks[1], &log.blocks[1]));
    }
}
