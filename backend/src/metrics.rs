//! Counters and a latency histogram, rendered as Prometheus text at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the save latency buckets, in seconds.
const SAVE_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    pub saves: AtomicU64,
    /// Autosave calls on a clean context: no I/O.
    pub saves_skipped: AtomicU64,
    /// Autosave calls while streaming, within the flush interval: memory only for now.
    pub saves_deferred: AtomicU64,
    pub save_errors: AtomicU64,
    pub polls: AtomicU64,
    pub polls_not_modified: AtomicU64,
    pub live_contexts: AtomicU64,
    /// About how many bytes the live contexts' messages take, as of the last load.
    pub live_bytes: AtomicU64,
    /// Stored messages that could not be decoded and were shown as unreadable.
    pub unreadable_messages: AtomicU64,
    /// Long polls waiting for a change right now.
    pub held_polls: AtomicU64,
    /// Per-user limits, counted over all users (a label per user would grow without
    /// bound): chats refused by `--max-contexts-per-user`, turns by `--turns-per-minute`,
    /// long polls by `--max-waiters-per-user`.
    pub context_quota_refusals: AtomicU64,
    pub turns_rate_limited: AtomicU64,
    pub user_waiter_refusals: AtomicU64,
    /// Transactions that committed saves, and the saves they wrote: on SQLite one commit
    /// (one fsync) carries the saves of every chat that waited for it.
    pub store_commits: AtomicU64,
    pub store_committed_saves: AtomicU64,
    /// SQLite's search indexer: passes that indexed messages, the messages they indexed,
    /// and how long they held the writer connection.
    pub search_index_passes: AtomicU64,
    pub search_indexed_messages: AtomicU64,
    search_index_micros: AtomicU64,
    save_latency: Histogram,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; SAVE_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    pub fn record_save(&self, took: Duration) {
        self.saves.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let h = &self.save_latency;
        for (bound, bucket) in SAVE_BUCKETS.iter().zip(&h.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        h.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// One transaction that wrote `saves` saves (none: nothing counted).
    pub fn record_commit(&self, saves: u64) {
        if saves > 0 {
            self.store_commits.fetch_add(1, Ordering::Relaxed);
            self.store_committed_saves
                .fetch_add(saves, Ordering::Relaxed);
        }
    }

    /// One indexer pass that indexed `messages`, holding the writer for `took`.
    pub fn record_index_pass(&self, messages: u64, took: Duration) {
        self.search_index_passes.fetch_add(1, Ordering::Relaxed);
        self.search_indexed_messages
            .fetch_add(messages, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.search_index_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// The time indexer passes held the writer, in all.
    pub fn search_index_time(&self) -> Duration {
        Duration::from_micros(Self::get(&self.search_index_micros))
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "chatsync_saves_total",
                "Context saves written to the store.",
                &self.saves,
            ),
            (
                "chatsync_saves_skipped_total",
                "Autosave calls on a clean context (no I/O).",
                &self.saves_skipped,
            ),
            (
                "chatsync_saves_deferred_total",
                "Autosave calls while streaming that waited for the flush interval.",
                &self.saves_deferred,
            ),
            (
                "chatsync_save_errors_total",
                "Saves that failed.",
                &self.save_errors,
            ),
            ("chatsync_polls_total", "State polls answered.", &self.polls),
            (
                "chatsync_polls_not_modified_total",
                "State polls answered 304 Not Modified.",
                &self.polls_not_modified,
            ),
            (
                "chatsync_unreadable_messages_total",
                "Stored messages that could not be decoded (shown as unreadable).",
                &self.unreadable_messages,
            ),
            (
                "chatsync_context_quota_refusals_total",
                "Chats refused because their user owns --max-contexts-per-user already.",
                &self.context_quota_refusals,
            ),
            (
                "chatsync_turns_rate_limited_total",
                "Turns refused by a user's --turns-per-minute budget.",
                &self.turns_rate_limited,
            ),
            (
                "chatsync_user_waiter_refusals_total",
                "Long polls refused because their user holds --max-waiters-per-user already.",
                &self.user_waiter_refusals,
            ),
            (
                "chatsync_store_commits_total",
                "Transactions that committed saves (on SQLite one carries many chats' saves).",
                &self.store_commits,
            ),
            (
                "chatsync_store_committed_saves_total",
                "Saves those transactions wrote (over chatsync_store_commits_total: saves per commit).",
                &self.store_committed_saves,
            ),
            (
                "chatsync_search_index_passes_total",
                "Search indexer passes that indexed messages (SQLite; off the saves).",
                &self.search_index_passes,
            ),
            (
                "chatsync_search_indexed_messages_total",
                "Messages the search indexer indexed (SQLite).",
                &self.search_indexed_messages,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", Self::get(value));
        }
        let _ = writeln!(
            out,
            "# HELP chatsync_live_contexts Contexts loaded in memory.\n\
             # TYPE chatsync_live_contexts gauge\nchatsync_live_contexts {}",
            Self::get(&self.live_contexts)
        );
        let _ = writeln!(
            out,
            "# HELP chatsync_live_bytes About how many bytes the live contexts' messages take.\n\
             # TYPE chatsync_live_bytes gauge\nchatsync_live_bytes {}",
            Self::get(&self.live_bytes)
        );
        let _ = writeln!(
            out,
            "# HELP chatsync_held_polls Long polls waiting for a change.\n\
             # TYPE chatsync_held_polls gauge\nchatsync_held_polls {}",
            Self::get(&self.held_polls)
        );
        let _ = writeln!(
            out,
            "# HELP chatsync_search_index_seconds_total Time the search indexer's passes held \
             the writer connection.\n# TYPE chatsync_search_index_seconds_total counter\n\
             chatsync_search_index_seconds_total {}",
            self.search_index_time().as_secs_f64()
        );
        let name = "chatsync_save_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time one save takes.\n# TYPE {name} histogram"
        );
        let h = &self.save_latency;
        for (bound, bucket) in SAVE_BUCKETS.iter().zip(&h.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", Self::get(bucket));
        }
        let count = Self::get(&h.count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", Self::get(&h.sum_micros) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.record_save(Duration::from_micros(50));
        m.record_save(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("chatsync_saves_total 2"), "{text}");
        assert!(text.contains("chatsync_save_duration_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(text.contains("chatsync_save_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("chatsync_save_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("chatsync_save_duration_seconds_count 2"));
    }

    #[test]
    fn index_passes_add_up() {
        let m = Metrics::default();
        m.record_index_pass(3, Duration::from_millis(2));
        m.record_index_pass(5, Duration::from_millis(1));
        let text = m.render();
        assert!(
            text.contains("chatsync_search_index_passes_total 2"),
            "{text}"
        );
        assert!(
            text.contains("chatsync_search_indexed_messages_total 8"),
            "{text}"
        );
        assert!(
            text.contains("chatsync_search_index_seconds_total 0.003\n"),
            "{text}"
        );
    }
}
