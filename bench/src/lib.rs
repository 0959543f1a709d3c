//! What the benchmark binaries share: a throw-away database, running one turn through
//! the engine, and percentiles.

use chatsync::domain::NewMessage;
use chatsync::engine::Engine;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use uuid::Uuid;

pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// Generous: a turn with the zero-delay scripted model takes milliseconds; this only turns
/// a hang into an error.
const TURN_WAIT: Duration = Duration::from_secs(30);

/// The file `temp_database` names in its folder.
pub const DB_FILE: &str = "db.sqlite";

/// A fresh SQLite file in its own temporary folder (removed when the folder is dropped),
/// as a `sqlite://` URL.
pub fn temp_database() -> Result<(TempDir, String), BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("chatsync-bench")
        .tempdir()?;
    let url = format!("sqlite://{}", dir.path().join(DB_FILE).display());
    Ok((dir, url))
}

/// Sends `content` and waits until the turn rests; returns the wall time of the whole
/// turn. A turn that does not rest within the wait is an error, never a sample.
pub async fn run_turn(engine: &Engine, id: Uuid, content: String) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let outcome = engine
        .send_message(id, NewMessage::text(content)?, TURN_WAIT)
        .await?;
    let took = started.elapsed();
    if !outcome.settled {
        return Err(format!("a turn did not settle within {TURN_WAIT:?}").into());
    }
    Ok(took)
}

/// Nearest-rank percentile (`q` in 0..=1) of samples sorted in ascending order.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Ends a benchmark: errors go to stderr with the program's name and exit code 1 (bad
/// arguments already left with code 2 through clap).
pub fn finish(program: &str, result: Result<(), BenchError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 0.95), Duration::from_millis(95));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
