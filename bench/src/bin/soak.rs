//! Soak: N simulated users against real server processes it starts (one on SQLite, or
//! several on the Postgres `CHATSYNC_TEST_PG_URL` names), optionally killing one with
//! SIGKILL every K seconds and starting it again; then the end checks (every acknowledged
//! message stored exactly once, every chat at rest, every user message answered, the
//! instances agree, no client saw a version go back). Prints throughput, latencies,
//! errors by kind, memory and the saves per commit of the store, and exits 1 when a check
//! fails.
//!
//! The server is `CHATSYNC_BIN` (default: the debug build); `scripts/soak.sh` builds it in
//! release mode, starts a throwaway Postgres and runs this. The users and checks are
//! `chatsync_e2e::soak`, which the test command's short soak runs too.
//!
//! ```text
//! $ cargo run --release --bin soak -- --users 300 --duration 120
//! ```

use chatsync_bench::{finish, millis, percentile, BenchError};
use chatsync_e2e::postgres::TestPostgres;
use chatsync_e2e::soak::{self, Config, Report, Store};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

/// The users share the machine with the server: every cycle they spend is one it lacks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "soak", about = "Simulated users, optional chaos, end checks")]
struct Args {
    /// Simulated users (each with one chat).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Server processes; more than one runs on Postgres.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Run on Postgres even with one instance.
    #[arg(long)]
    postgres: bool,
    /// Seconds during which users start turns.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Think time before each send, drawn uniformly: MIN-MAX milliseconds.
    #[arg(long, default_value = "1000-3000", value_parser = parse_range)]
    think_ms: (u64, u64),
    /// SIGKILL an instance (in turn) every this many seconds, and start it again.
    #[arg(long)]
    kill_every: Option<u64>,
    /// Seconds after the load phase for turns to finish and chats to rest and agree.
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// `wait_ms` of the users' long polls.
    #[arg(long, default_value_t = 25_000)]
    poll_wait_ms: u64,
    /// The scripted model's delay between chunks (the server's default: 20).
    #[arg(long, default_value_t = 20)]
    chunk_delay_ms: u64,
    /// The lease of a chat's turn on Postgres (the server's default: 5000).
    #[arg(long, default_value_t = 5000)]
    lease_ttl_ms: u64,
    /// One more flag for every server process (repeat it; e.g. --server-arg=--max-waiters=20000).
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let number = |s: &str| s.trim().parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    let (low, high) = (number(low)?, number(high)?);
    if low > high {
        return Err(format!("{low} is above {high}"));
    }
    Ok((low, high))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

async fn run(args: Args) -> Result<(), BenchError> {
    let on_postgres = args.postgres || args.instances > 1;
    let pg = if on_postgres {
        Some(TestPostgres::from_env().ok_or(
            "Postgres runs need CHATSYNC_TEST_PG_URL (scripts/soak.sh starts a throwaway one)",
        )?)
    } else {
        None
    };
    let store = pg.as_ref().map_or(Store::Sqlite, Store::Postgres);
    let mut server_flags = vec![
        "--scripted-chunk-delay-ms".to_owned(),
        args.chunk_delay_ms.to_string(),
    ];
    if on_postgres {
        server_flags.extend(["--lease-ttl-ms".to_owned(), args.lease_ttl_ms.to_string()]);
    }
    server_flags.extend(args.server_arg.iter().cloned());
    let config = Config {
        users: args.users,
        instances: args.instances,
        duration: Duration::from_secs(args.duration),
        think: (
            Duration::from_millis(args.think_ms.0),
            Duration::from_millis(args.think_ms.1),
        ),
        kill_every: args.kill_every.map(Duration::from_secs),
        settle: Duration::from_secs(args.settle),
        poll_wait: Duration::from_millis(args.poll_wait_ms),
        server_flags,
    };
    let open_files = soak::raise_open_files_limit()?;
    println!(
        "soak users={} instances={} store={} duration_s={} think_ms={}-{} kill_every_s={} \
         chunk_delay_ms={} open_files={open_files} load_average_start={}",
        args.users,
        args.instances,
        if on_postgres { "postgres" } else { "sqlite" },
        args.duration,
        args.think_ms.0,
        args.think_ms.1,
        args.kill_every.map_or("-".to_owned(), |k| k.to_string()),
        args.chunk_delay_ms,
        load_average(),
    );
    let report = soak::run(&config, store).await?;
    print_report(&report, &args);
    println!("load_average_end={}", load_average());
    for detail in &report.details {
        println!("failed {detail}");
    }
    if let Some(logs) = &report.logs {
        println!("logs={}", logs.display());
    }
    match report.failures() {
        failures if failures.is_empty() => {
            println!("checks=ok");
            Ok(())
        }
        failures => Err(format!("checks failed: {}", failures.join("; ")).into()),
    }
}

fn latencies(name: &str, samples: &[Duration]) {
    println!(
        "{name} n={} p50_ms={:.1} p95_ms={:.1} p99_ms={:.1} max_ms={:.1}",
        samples.len(),
        millis(percentile(samples, 0.50)),
        millis(percentile(samples, 0.95)),
        millis(percentile(samples, 0.99)),
        millis(samples.last().copied().unwrap_or_default()),
    );
}

fn print_report(report: &Report, args: &Args) {
    let turns = report.completed_turns();
    println!(
        "turns={turns} turns_per_s={:.1} chats={} chatless_users={}",
        turns as f64 / args.duration.max(1) as f64,
        report.chats,
        report.chatless
    );
    latencies("ack", &report.ack_latencies());
    latencies("reply", &report.reply_latencies());
    let total: u64 = report.errors.values().sum();
    let kinds: Vec<String> = report
        .errors
        .iter()
        .map(|(kind, n)| format!("{kind:?}={n}"))
        .collect();
    println!("errors={total} {}", kinds.join(" "));
    let per_instance = args.users as f64 / args.instances.max(1) as f64;
    for (slot, memory) in report.memory.iter().enumerate() {
        // Against the first process's idle size: meaningless once it was restarted.
        let per_user = match report.kills.is_empty() {
            true => {
                let grown = memory.loaded_kib.saturating_sub(memory.idle_kib);
                format!("{:.1}", grown as f64 / per_instance)
            }
            false => "-".to_owned(),
        };
        println!(
            "instance={slot} peak_rss_mib={:.1} idle_rss_mib={:.1} loaded_rss_mib={:.1} \
             rss_per_user_kib={per_user}",
            memory.peak_kib as f64 / 1024.0,
            memory.idle_kib as f64 / 1024.0,
            memory.loaded_kib as f64 / 1024.0,
        );
    }
    if let Some((commits, saves)) = report.commits {
        println!(
            "store_commits={commits} committed_saves={saves} saves_per_commit={:.2}",
            saves as f64 / commits.max(1) as f64
        );
    }
    let rest_after_kills = report.rest_after_kills();
    let rests: Vec<String> = rest_after_kills
        .iter()
        .map(|r| r.map_or("never".to_owned(), |d| format!("{:.0}", millis(d))))
        .collect();
    let longest = rest_after_kills.into_iter().flatten().max();
    println!(
        "kills={} rest_after_kill_ms=[{}] longest_rest_after_kill_ms={}",
        report.kills.len(),
        rests.join(","),
        longest.map_or("-".to_owned(), |d| format!("{:.0}", millis(d)))
    );
    println!(
        "lost={} duplicated={} unknown={} unanswered={} not_at_rest={} disagreeing={} \
         unreadable={} versions_back={}",
        report.lost,
        report.duplicated,
        report.unknown,
        report.unanswered,
        report.not_at_rest,
        report.disagreeing,
        report.unreadable,
        report.versions_back
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    finish("soak", run(Args::parse()).await)
}
