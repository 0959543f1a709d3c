//! `persist-bench`: what one chat turn costs as the history grows.
//!
//! For each history length N it creates a context in a temporary SQLite file (WAL and
//! `synchronous=FULL`, as the store opens it), fills it to N messages with
//! `append_message`, then runs K full turns through the real engine and times each one
//! from `send_message` to its settled answer: user message, scripted reply streamed with
//! no chunk delay, back to Idle. No HTTP is involved. A few untimed turns on a separate
//! context warm the database and the runtime first, and the turns of the different
//! contexts alternate, so a disk or a neighbour slowing down mid-run weighs on every N
//! alike instead of skewing the ratio.
//!
//! Output, one line per N and then the ratio of the medians at the largest and smallest N:
//!
//! ```text
//! N=<n> steps=<k> median_ms=<x> p95_ms=<y>
//! ratio_<max>_vs_<min>=<r>
//! ```
//!
//! Beside the turns, in the same loop, it times pairs of raw commits on another SQLite file
//! opened the same way (one small row inserted per commit, through sqlx without the
//! engine): a turn is two commits (the user message, the resting state), so two raw
//! commits are the floor for this disk and runtime. After the ratio it prints
//!
//! ```text
//! raw_two_commits median_ms=<x> p95_ms=<y>
//! turn_vs_raw_<n>=<median turn at N=n / median raw pair>   (one per N)
//! ```
//!
//! A save writes only what changed, so the ratio should stay near 1. The lines starting
//! with `#` explain where the time goes, from the engine's metrics over the timed turns:
//! saves written, autosaves skipped (clean context) and deferred (streaming) per turn, the
//! mean save latency, the share of the turn spent in saves, and the cost of copying the
//! context's snapshot (the engine publishes one after every autosave call, so
//! `publishes_per_turn` = saves + skipped + deferred + 1) with its estimated share.
//!
//! A save does not write the search index: the store's background indexer does, for many
//! messages at a time, on the same writer connection (so its passes can delay a save that
//! waits behind one). Its work over the timed turns, per turn, is the last line (the
//! indexer gathers saves for 0.5 s, so a shorter timed loop may end before its first pass):
//!
//! ```text
//! # search_index passes_per_turn=<p> messages_per_pass=<m> writer_ms_per_turn=<w>
//! ```
//!
//! Then, untimed, what a turn writes: a few more turns on the largest history, each after
//! a checkpoint that empties the write-ahead log, counting the log's frames after it
//! (each frame is one page the commit wrote; the log's size says how many; a pass of the
//! search indexer that falls in a counted turn adds its pages), and the same for the raw
//! commits:
//!
//! ```text
//! # wal pages_per_save=<p> raw_pages_per_commit=<r>
//! ```

use chatsync::domain::{NewContext, Owner};
use chatsync::engine::{Deps, Engine, EngineSettings, Snapshot};
use chatsync::llm::ScriptedModel;
use chatsync::metrics::Metrics;
use chatsync::store::SqlStore;
use chatsync::tools::{ToolRegistry, DEFAULT_TOOL_TIMEOUT};
use chatsync_bench::{finish, millis, percentile, run_turn, temp_database, BenchError, DB_FILE};
use chatsync_protocol::{ContentPart, Role};
use clap::Parser;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const WARMUP_TURNS: u64 = 5;

#[derive(Debug, Parser)]
#[command(
    name = "persist-bench",
    about = "Times full chat turns against history length (engine + SQLite file, no HTTP)"
)]
struct Args {
    /// History lengths to measure, in messages.
    #[arg(required = true, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    sizes: Vec<u64>,

    /// Timed turns per history length.
    #[arg(short = 'k', long = "steps", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    steps: u64,
}

/// Metrics counters at one instant, or the difference between two instants.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    saves: u64,
    skipped: u64,
    deferred: u64,
    save_seconds: f64,
}

impl Counters {
    fn read(metrics: &Metrics) -> Self {
        // The save latency total is only exposed through the Prometheus text.
        let save_seconds = metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("chatsync_save_duration_seconds_sum "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let get = |c: &AtomicU64| Metrics::get(c);
        Counters {
            saves: get(&metrics.saves),
            skipped: get(&metrics.saves_skipped),
            deferred: get(&metrics.saves_deferred),
            save_seconds,
        }
    }

    /// Adds what happened between `before` and `after`.
    fn add_span(&mut self, before: &Counters, after: &Counters) {
        self.saves += after.saves - before.saves;
        self.skipped += after.skipped - before.skipped;
        self.deferred += after.deferred - before.deferred;
        self.save_seconds += after.save_seconds - before.save_seconds;
    }
}

/// The search indexer's work so far, or between two instants.
#[derive(Debug, Clone, Copy)]
struct IndexWork {
    passes: u64,
    messages: u64,
    held: Duration,
}

impl IndexWork {
    fn read(metrics: &Metrics) -> Self {
        IndexWork {
            passes: Metrics::get(&metrics.search_index_passes),
            messages: Metrics::get(&metrics.search_indexed_messages),
            held: metrics.search_index_time(),
        }
    }

    fn since(&self, before: &IndexWork) -> IndexWork {
        IndexWork {
            passes: self.passes - before.passes,
            messages: self.messages - before.messages,
            held: self.held.saturating_sub(before.held),
        }
    }
}

/// One history length: its context, the timed turns and what they cost.
#[derive(Debug)]
struct Series {
    size: u64,
    id: Uuid,
    samples: Vec<Duration>,
    cost: Counters,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    finish("persist-bench", run(args).await)
}

async fn run(args: Args) -> Result<(), BenchError> {
    let (dir, url) = temp_database()?;
    let metrics = Arc::new(Metrics::default());
    let engine = Engine::new(Deps {
        // The URL is sqlite://, so this is the SQLite store the server opens by default.
        store: Arc::new(SqlStore::connect(&url).await?.with_metrics(metrics.clone())),
        model: Arc::new(ScriptedModel::new(Duration::ZERO)),
        tools: Arc::new(ToolRegistry::builtin(DEFAULT_TOOL_TIMEOUT)),
        metrics: metrics.clone(),
        settings: EngineSettings::default(),
    });

    let warmup = new_context(&engine).await?;
    for i in 0..WARMUP_TURNS {
        run_turn(&engine, warmup, format!("warm-up turn {i}")).await?;
    }

    let mut raw = RawCommits::open().await?;
    let mut raw_samples = Vec::with_capacity(usize::try_from(args.steps)?);
    let mut all = Vec::with_capacity(args.sizes.len());
    for &size in &args.sizes {
        all.push(Series {
            size,
            id: filled_context(&engine, size).await?,
            samples: Vec::with_capacity(usize::try_from(args.steps)?),
            cost: Counters::default(),
        });
    }
    let index_before = IndexWork::read(&metrics);
    for step in 0..args.steps {
        for series in &mut all {
            let before = Counters::read(&metrics);
            let content = format!("Timed turn {step}: what does this cost?");
            series
                .samples
                .push(run_turn(&engine, series.id, content).await?);
            series.cost.add_span(&before, &Counters::read(&metrics));
        }
        raw_samples.push(raw.two_commits().await?);
    }
    let index = IndexWork::read(&metrics).since(&index_before);

    let mut medians = Vec::with_capacity(all.len());
    for series in &mut all {
        series.samples.sort_unstable();
        let median = percentile(&series.samples, 0.5);
        println!(
            "N={} steps={} median_ms={:.3} p95_ms={:.3}",
            series.size,
            args.steps,
            millis(median),
            millis(percentile(&series.samples, 0.95))
        );
        println!("{}", explain(&engine, series).await?);
        medians.push((series.size, median));
    }
    let smallest = medians.iter().min_by_key(|(size, _)| *size);
    let largest = medians.iter().max_by_key(|(size, _)| *size);
    if let (Some((lo, lo_median)), Some((hi, hi_median))) = (smallest, largest) {
        println!(
            "ratio_{hi}_vs_{lo}={:.3}",
            hi_median.as_secs_f64() / lo_median.as_secs_f64()
        );
    }
    raw_samples.sort_unstable();
    let raw_median = percentile(&raw_samples, 0.5);
    println!(
        "raw_two_commits median_ms={:.3} p95_ms={:.3}",
        millis(raw_median),
        millis(percentile(&raw_samples, 0.95))
    );
    for (size, median) in medians {
        println!(
            "turn_vs_raw_{size}={:.2}",
            median.as_secs_f64() / raw_median.as_secs_f64()
        );
    }
    let turns = (args.steps * args.sizes.len() as u64) as f64;
    println!(
        "# search_index passes_per_turn={:.3} messages_per_pass={:.1} writer_ms_per_turn={:.3}",
        index.passes as f64 / turns,
        index.messages as f64 / index.passes.max(1) as f64,
        index.held.as_secs_f64() * 1e3 / turns
    );
    if let Some(largest) = all.iter().max_by_key(|s| s.size) {
        let pages =
            pages_per_save(&engine, &metrics, &dir.path().join(DB_FILE), largest.id).await?;
        let raw_pages = raw.pages_per_commit().await?;
        println!("# wal pages_per_save={pages:.2} raw_pages_per_commit={raw_pages:.2}");
    }
    Ok(())
}

/// Turns whose write-ahead log frames are counted.
const COUNTED_TURNS: u32 = 20;

/// A write-ahead log's frames: its header is 32 bytes, each frame a 24-byte header and a
/// page.
fn wal_frames(database: &Path, page_size: u64) -> Result<u64, BenchError> {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    let bytes = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    Ok(bytes.saturating_sub(32) / (24 + page_size))
}

/// Empties the write-ahead log of the database `conn` is open on (`false`: a writer or
/// reader was in the way, the log is not empty).
async fn empty_wal(conn: &mut sqlx::SqliteConnection) -> Result<bool, BenchError> {
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut *conn)
        .await?;
    Ok(busy == 0)
}

async fn page_size(conn: &mut sqlx::SqliteConnection) -> Result<u64, BenchError> {
    let size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(size)?)
}

/// The pages a save writes, from `COUNTED_TURNS` turns into the context `id` (a turn
/// whose log could not be emptied first, the search indexer writing, is left out).
async fn pages_per_save(
    engine: &Engine,
    metrics: &Metrics,
    database: &Path,
    id: Uuid,
) -> Result<f64, BenchError> {
    use sqlx::ConnectOptions;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(database);
    let mut conn = options.connect().await?;
    let page_size = page_size(&mut conn).await?;
    let (mut pages, mut saves) = (0, 0);
    for turn in 0..COUNTED_TURNS {
        if !empty_wal(&mut conn).await? {
            continue;
        }
        let before = Metrics::get(&metrics.saves);
        run_turn(
            engine,
            id,
            format!("Counted turn {turn}: what does it write?"),
        )
        .await?;
        pages += wal_frames(database, page_size)?;
        saves += Metrics::get(&metrics.saves) - before;
    }
    Ok(pages as f64 / saves.max(1) as f64)
}

/// The floor a turn's persistence is measured against: plain commits on a SQLite file in
/// WAL mode with `synchronous=FULL`, as the store opens its database.
struct RawCommits {
    dir: tempfile::TempDir,
    conn: sqlx::SqliteConnection,
    next: i64,
}

impl RawCommits {
    async fn open() -> Result<Self, BenchError> {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
        use sqlx::{ConnectOptions, Executor};
        let (dir, url) = temp_database()?;
        let options: SqliteConnectOptions = url.parse()?;
        let mut conn = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await?;
        conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .await?;
        Ok(RawCommits { dir, conn, next: 0 })
    }

    /// Two commits of one row each, timed together.
    async fn two_commits(&mut self) -> Result<Duration, BenchError> {
        use sqlx::Connection;
        let started = Instant::now();
        for _ in 0..2 {
            self.next += 1;
            let mut tx = self.conn.begin().await?;
            sqlx::query("INSERT INTO rows (id, body) VALUES ($1, $2)")
                .bind(self.next)
                .bind("A row of about the size of a short chat message, committed alone.")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(started.elapsed())
    }

    /// The pages a raw commit writes, counted as `pages_per_save` counts a save's.
    async fn pages_per_commit(&mut self) -> Result<f64, BenchError> {
        let database = self.dir.path().join(DB_FILE);
        let page_size = page_size(&mut self.conn).await?;
        let mut pages = 0;
        for _ in 0..COUNTED_TURNS {
            if !empty_wal(&mut self.conn).await? {
                return Err("the raw commits' log could not be emptied".into());
            }
            self.two_commits().await?;
            pages += wal_frames(&database, page_size)?;
        }
        Ok(pages as f64 / f64::from(2 * COUNTED_TURNS))
    }
}

async fn new_context(engine: &Engine) -> Result<Uuid, BenchError> {
    let snapshot = engine
        .create_context(&Owner::local(), NewContext::default())
        .await?;
    Ok(snapshot.record.id)
}

/// A new context holding `size` messages, written through the engine one by one.
async fn filled_context(engine: &Engine, size: u64) -> Result<Uuid, BenchError> {
    let id = new_context(engine).await?;
    for i in 0..size {
        // A plausible conversation: user and assistant taking turns, a sentence each.
        let role = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        let text = format!("History message {i}: a sentence of about the usual length.");
        engine
            .append_message(id, role, vec![ContentPart::text(text)], None)
            .await?;
    }
    let filled = engine.snapshot(id).await?.message_count() as u64;
    if filled != size {
        return Err(format!("filled the context to {filled} messages, not {size}").into());
    }
    Ok(id)
}

/// The `#` line for one series: where its turns' time went.
async fn explain(engine: &Engine, series: &Series) -> Result<String, BenchError> {
    let turns = series.samples.len() as f64;
    let turn_seconds: f64 = series.samples.iter().map(Duration::as_secs_f64).sum();
    let cost = &series.cost;
    let mean_save_ms = if cost.saves == 0 {
        0.0
    } else {
        cost.save_seconds * 1e3 / cost.saves as f64
    };
    let publishes = (cost.saves + cost.skipped + cost.deferred) as f64 / turns + 1.0;
    let copy = snapshot_copy_time(engine, series.id).await?;
    Ok(format!(
        "# N={} saves_per_turn={:.2} skipped_per_turn={:.2} deferred_per_turn={:.2} \
         mean_save_ms={:.3} save_share={:.0}% publishes_per_turn={publishes:.2} \
         snapshot_copy_us={:.2} snapshot_share={:.0}%",
        series.size,
        cost.saves as f64 / turns,
        cost.skipped as f64 / turns,
        cost.deferred as f64 / turns,
        mean_save_ms,
        100.0 * cost.save_seconds / turn_seconds,
        copy.as_secs_f64() * 1e6,
        100.0 * copy.as_secs_f64() * publishes * turns / turn_seconds
    ))
}

/// Mean time to build and drop one copy of the context's published snapshot, the work the
/// engine repeats at every publish.
async fn snapshot_copy_time(engine: &Engine, id: Uuid) -> Result<Duration, BenchError> {
    const COPIES: u32 = 200;
    let snapshot = engine.snapshot(id).await?;
    let started = Instant::now();
    for _ in 0..COPIES {
        drop(std::hint::black_box(Snapshot::clone(&snapshot)));
    }
    Ok(started.elapsed() / COPIES)
}
