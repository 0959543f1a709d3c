//! A server-sent events decoder: bytes in, the `data` of each complete event out.
//!
//! Only what chat completion streams use is kept: `data` fields (several lines of one
//! event are joined with `\n`), comments and other fields are skipped, an event ends at
//! a blank line. Lines end with `\n` or `\r\n`.

/// A line longer than this is not an SSE stream we can use, and must not grow memory
/// without bound.
const MAX_LINE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("a stream line is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    #[error("a stream line is not UTF-8")]
    NotUtf8,
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the line not yet ended.
    partial: Vec<u8>,
    /// `data` of the event not yet ended.
    data: Option<String>,
}

impl SseDecoder {
    /// Feeds the next bytes; returns the data of every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, SseError> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let mut line = std::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE_BYTES {
            return Err(SseError::LineTooLong);
        }
        Ok(events)
    }

    /// The stream ended: an event whose lines all arrived counts even without its blank
    /// line; a line cut off mid-way does not.
    pub fn finish(&mut self) -> Option<String> {
        self.partial.clear();
        self.data.take()
    }

    fn line(&mut self, line: &str) -> Option<String> {
        if line.is_empty() {
            return self.data.take();
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field == "data" {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn events_end_at_blank_lines_and_other_fields_are_skipped() {
        let mut d = SseDecoder::default();
        let stream = ": keep-alive\nevent: message\ndata: {\"a\":1}\n\ndata: one\r\ndata: two\r\n\r\nid: 7\n\n";
        assert_eq!(
            d.push(stream.as_bytes()),
            Ok(vec!["{\"a\":1}".to_owned(), "one\ntwo".to_owned()])
        );
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn a_complete_last_event_counts_without_its_blank_line_but_a_cut_line_does_not() {
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: [DONE]\n"), Ok(vec![]));
        assert_eq!(d.finish(), Some("[DONE]".into()));
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: {\"cut"), Ok(vec![]));
        assert_eq!(d.finish(), None);
    }

    #[test]
    fn endless_lines_and_bad_bytes_are_errors() {
        let mut d = SseDecoder::default();
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        assert_eq!(d.push(&long), Err(SseError::LineTooLong));
        let mut d = SseDecoder::default();
        assert_eq!(d.push(b"data: \xff\xfe\n\n"), Err(SseError::NotUtf8));
    }

    proptest! {
        /// However the network splits the bytes, the same events come out.
        #[test]
        fn splitting_never_changes_the_events(cuts in proptest::collection::vec(0usize..80, 0..6)) {
            let stream = "data: {\"x\":\"h\u{e9}llo\"}\n\n: c\ndata: a\ndata: b\n\ndata: [DONE]\n\n".as_bytes();
            let mut whole = SseDecoder::default();
            let want = whole.push(stream).expect("whole");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            cuts.sort_unstable();
            let mut d = SseDecoder::default();
            let mut got = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([stream.len()]) {
                got.extend(d.push(&stream[start..cut]).expect("piece"));
                start = cut;
            }
            prop_assert_eq!(got, want);
        }
    }
}
