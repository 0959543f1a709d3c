//! How long to wait before the next poll.
//!
//! The schedule trades freshness for load: a chat that keeps changing is polled at the base
//! interval, a quiet one is polled less and less often, and a failing server is not
//! hammered. An action by the user opens a short burst at the base interval, because the
//! server is about to change.

use super::options::Config;

#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    config: Config,
    interval_ms: f64,
    unchanged: u32,
    burst_left: u32,
}

impl Backoff {
    pub fn new(config: Config) -> Self {
        Backoff {
            interval_ms: f64::from(config.base_interval_ms),
            config,
            unchanged: 0,
            burst_left: 0,
        }
    }

    /// The delay before the next poll, in whole milliseconds.
    pub fn interval_ms(&self) -> u32 {
        // The interval stays between base and max, both u32, so the cast cannot truncate.
        self.interval_ms.round() as u32
    }

    /// Back to the base interval, as when the tab becomes visible again.
    pub fn reset(&mut self) {
        self.interval_ms = f64::from(self.config.base_interval_ms);
        self.unchanged = 0;
    }

    /// The user acted: the next `burst_polls` polls run at the base interval.
    pub fn burst(&mut self) {
        self.reset();
        self.burst_left = self.config.burst_polls;
    }

    /// A poll saw a change.
    pub fn changed(&mut self) {
        self.take_burst_poll();
        self.reset();
    }

    /// A poll saw nothing new. The first `unchanged_polls_before_backoff` such polls in a
    /// row keep the interval; every later one grows it.
    pub fn unchanged(&mut self) {
        let in_burst = self.take_burst_poll();
        self.unchanged = self.unchanged.saturating_add(1);
        if !in_burst && self.unchanged > self.config.unchanged_polls_before_backoff {
            self.grow();
        }
    }

    /// A poll failed. Errors grow the interval at once, burst or not: retrying a failing
    /// server quickly only adds to its load.
    pub fn failed(&mut self) {
        self.take_burst_poll();
        self.unchanged = 0;
        self.grow();
    }

    fn grow(&mut self) {
        let max = f64::from(self.config.max_interval_ms);
        self.interval_ms = (self.interval_ms * self.config.backoff_factor).min(max);
    }

    /// Uses up one poll of the burst; true when there was one.
    fn take_burst_poll(&mut self) -> bool {
        let in_burst = self.burst_left > 0;
        self.burst_left = self.burst_left.saturating_sub(1);
        in_burst
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn defaults() -> Backoff {
        Backoff::new(Config::default())
    }

    #[test]
    fn quiet_chat_backs_off_after_the_grace_polls_up_to_the_max() {
        let mut b = defaults();
        let mut seen = Vec::new();
        for _ in 0..8 {
            b.unchanged();
            seen.push(b.interval_ms());
        }
        assert_eq!(seen, [1000, 1000, 1500, 2250, 3375, 5000, 5000, 5000]);
    }

    #[test]
    fn a_change_returns_to_the_base_interval() {
        let mut b = defaults();
        for _ in 0..6 {
            b.unchanged();
        }
        assert_eq!(b.interval_ms(), 5000);
        b.changed();
        assert_eq!(b.interval_ms(), 1000);
        // The grace count starts over too.
        b.unchanged();
        b.unchanged();
        assert_eq!(b.interval_ms(), 1000);
    }

    #[test]
    fn errors_back_off_immediately() {
        let mut b = defaults();
        b.failed();
        assert_eq!(b.interval_ms(), 1500);
        b.failed();
        b.failed();
        b.failed();
        b.failed();
        assert_eq!(b.interval_ms(), 5000);
    }

    #[test]
    fn a_burst_keeps_the_base_interval_for_unchanged_polls() {
        let mut b = Backoff::new(Config {
            burst_polls: 3,
            unchanged_polls_before_backoff: 0,
            ..Config::default()
        });
        b.unchanged();
        assert_eq!(b.interval_ms(), 1500);
        b.burst();
        assert_eq!(b.interval_ms(), 1000);
        for _ in 0..3 {
            b.unchanged();
            assert_eq!(b.interval_ms(), 1000);
        }
        b.unchanged();
        assert!(b.interval_ms() > 1000, "the burst is over");
    }
}
