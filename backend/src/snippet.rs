//! The snippet of a search result: a short excerpt around the first matched word, cut into
//! plain-text parts with the matched words marked (`chatsync_protocol::Snippet`). Pure: the
//! store finds the text that matched best, this cuts it. Built here rather than by each
//! database's own highlighter (FTS5's `snippet()` needs the text in the index, which is
//! contentless; Postgres' `ts_headline` marks with markup) so both stores answer the same
//! parts and nothing in them is markup.

use chatsync_protocol::SnippetPart;

/// The most characters of the text an excerpt shows (then `…` where it was cut).
pub const SNIPPET_CHARS: usize = 160;
/// How many characters before the first match the excerpt starts, at most.
const BEFORE_MATCH: usize = 40;
/// Where an excerpt was cut.
const CUT: &str = "…";

/// The excerpt of `text` around the first word starting with one of `words` (lowercase,
/// letters and digits, as a search query holds them); runs of white space become one
/// space. Without a match, the excerpt is the start of the text.
pub fn snippet(text: &str, words: &[String]) -> Vec<SnippetPart> {
    let flat: Vec<char> = text
        .split_whitespace()
        .flat_map(|w| std::iter::once(' ').chain(w.chars()))
        .skip(1)
        .collect();
    let matches = matched_words(&flat, words);
    let first = matches.first().map_or(0, |m| m.0);
    let (start, end) = window(&flat, first);
    let mut parts = Vec::new();
    if start > 0 {
        push(&mut parts, CUT.to_owned(), false);
    }
    let mut at = start;
    for &(s, e) in matches.iter().filter(|m| m.0 < end) {
        let e = e.min(end);
        push(&mut parts, flat[at..s].iter().collect(), false);
        push(&mut parts, flat[s..e].iter().collect(), true);
        at = e;
    }
    push(&mut parts, flat[at..end].iter().collect(), false);
    if end < flat.len() {
        push(&mut parts, CUT.to_owned(), false);
    }
    parts
}

/// The `(start, end)` of each run of letters and digits that starts with one of `words`,
/// compared in lowercase.
fn matched_words(text: &[char], words: &[String]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && text[i].is_alphanumeric() {
            i += 1;
        }
        let word: String = text[start..i].iter().collect::<String>().to_lowercase();
        if words.iter().any(|w| word.starts_with(w.as_str())) {
            found.push((start, i));
        }
    }
    found
}

/// The part of `text` to show: from a word start at most `BEFORE_MATCH` characters before
/// `first`, at most `SNIPPET_CHARS` long, ending at a word end where one is in reach.
fn window(text: &[char], first: usize) -> (usize, usize) {
    let word_inside = |i: usize| {
        i > 0 && i < text.len() && text[i - 1].is_alphanumeric() && text[i].is_alphanumeric()
    };
    let mut start = first.saturating_sub(BEFORE_MATCH);
    while start < first && (word_inside(start) || text[start] == ' ') {
        start += 1;
    }
    let mut end = (start + SNIPPET_CHARS).min(text.len());
    let mut cut = end;
    while cut > start && word_inside(cut) {
        cut -= 1;
    }
    if cut > first {
        end = cut;
    }
    while end > start && text[end - 1] == ' ' {
        end -= 1;
    }
    (start, end)
}

/// Appends a part, joined to the one before when neither is a match.
fn push(parts: &mut Vec<SnippetPart>, text: String, matched: bool) {
    if text.is_empty() {
        return;
    }
    match parts.last_mut() {
        Some(last) if !matched && !last.matched => last.text.push_str(&text),
        _ => parts.push(SnippetPart { text, matched }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(q: &[&str]) -> Vec<String> {
        q.iter().map(|w| w.to_string()).collect()
    }

    /// The parts as text with matches in brackets.
    fn shown(parts: &[SnippetPart]) -> String {
        parts
            .iter()
            .map(|p| {
                if p.matched {
                    format!("[{}]", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect()
    }

    #[test]
    fn matched_words_are_marked_as_prefixes_in_any_case() {
        let parts = snippet(
            "Zebras and a zebu\n\nnear the  river",
            &words(&["zeb", "river"]),
        );
        assert_eq!(shown(&parts), "[Zebras] and a [zebu] near the [river]");
        assert!(
            !snippet("a mazeb", &words(&["zeb"]))
                .iter()
                .any(|p| p.matched),
            "only word starts"
        );
    }

    #[test]
    fn a_long_text_is_cut_around_the_first_match_at_word_boundaries() {
        let before = "word ".repeat(100);
        let after = " tail".repeat(100);
        let parts = snippet(&format!("{before}needle{after}"), &words(&["needle"]));
        let text = shown(&parts);
        assert!(text.starts_with("…word"), "{text}");
        assert!(text.ends_with("tail…"), "{text}");
        let at = text.find("[needle]").expect("the match is shown");
        assert!(at <= BEFORE_MATCH + CUT.len() + 1, "{text}");
        let body = text
            .trim_start_matches(CUT)
            .trim_end_matches(CUT)
            .replace(['[', ']'], "");
        assert!(body.chars().count() <= SNIPPET_CHARS, "{text}");
    }

    #[test]
    fn without_a_match_the_start_is_shown() {
        let parts = snippet(&"café ".repeat(60), &words(&["cafe"]));
        assert_eq!(parts.len(), 1, "{parts:?}");
        assert!(!parts[0].matched);
        assert!(parts[0].text.starts_with("café café"));
        assert!(parts[0].text.ends_with(&format!("café{CUT}")));
        assert!(snippet("", &words(&["x"])).is_empty());
    }

    #[test]
    fn markup_in_the_text_stays_text() {
        let parts = snippet("<b>bold</b> <script>x</script>", &words(&["bold"]));
        assert_eq!(shown(&parts), "<b>[bold]</b> <script>x</script>");
    }

    proptest! {
        /// Whatever the text, the parts are pieces of it in order, bounded, and each
        /// matched part starts with a query word.
        #[test]
        fn parts_are_bounded_pieces_of_the_text(text in ".{0,600}", word in "[a-z0-9]{1,3}") {
            let parts = snippet(&text, std::slice::from_ref(&word));
            let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let shown: String = parts.iter().map(|p| p.text.as_str()).collect();
            let inner = shown.strip_prefix(CUT).unwrap_or(&shown);
            let inner = inner.strip_suffix(CUT).unwrap_or(inner);
            prop_assert!(flat.contains(inner), "{shown:?} not in {flat:?}");
            prop_assert!(inner.chars().count() <= SNIPPET_CHARS);
            for p in parts.iter().filter(|p| p.matched) {
                prop_assert!(p.text.to_lowercase().starts_with(&word), "{p:?}");
            }
        }
    }
}
