//! `search-bench`: what one user's search costs while another user has many matches, on
//! SQLite, before and after migration 0011 (search inside the owner's index entries), and
//! how long that migration takes to rebuild the index.
//!
//! For each N it writes a temporary SQLite file with the migrations before 0011: another
//! user with N messages (50 a chat) that all match `a`, and the searching user with
//! `--mine` messages, one chat. It times `--searches` searches for `a` by the searching
//! user with the query the store ran before 0011 (every user's FTS5 matches, then the
//! owner's kept), then opens the store (which runs 0011 and rebuilds the index, timed),
//! then times the same searches through `Store::search_contexts`. Output, one line per N:
//!
//! ```text
//! N=<n> mine=<m> before_median_ms=<x> migrate_0011_s=<s> after_median_ms=<y> after_p95_ms=<z>
//! ```
//!
//! After 0011 the time should stay flat as N grows; before it grew with N.

use chatsync::domain::SearchQuery;
use chatsync::store;
use chatsync_bench::{finish, millis, percentile, temp_database, BenchError};
use clap::Parser;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;
use uuid::Uuid;

/// The migrations that ran before the one measured (0011).
const BEFORE_0011: usize = 10;
/// Messages per chat of the other user.
const PER_CHAT: u64 = 50;

#[derive(Debug, Parser)]
#[command(
    name = "search-bench",
    about = "Times one user's search while another has N matches, before and after migration 0011 (SQLite)"
)]
struct Args {
    /// The other user's message counts to measure (all match the query).
    #[arg(required = true, value_parser = clap::value_parser!(u64).range(50..=5_000_000))]
    others: Vec<u64>,
    /// The searching user's messages.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    mine: u64,
    /// Searches timed per N and schema.
    #[arg(short = 'k', long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    searches: u64,
}

/// The query of the store before 0011: every user's matches, the owner kept after.
const SEARCH_BEFORE_0011: &str = "WITH hits AS ( \
      SELECT c.id AS id, 2 * f.rank AS score FROM contexts_fts f \
        JOIN contexts c ON c.rowid = f.rowid WHERE contexts_fts MATCH $1 \
      UNION ALL \
      SELECT m.context_id, f.rank FROM messages_fts f \
        JOIN messages m ON m.rowid = f.rowid WHERE messages_fts MATCH $1), \
    best AS (SELECT id, MIN(score) AS score FROM hits GROUP BY id) \
    SELECT contexts.id FROM contexts JOIN best USING (id) WHERE owner = $2 \
    ORDER BY best.score, updated_at DESC, contexts.id DESC LIMIT 50";

#[tokio::main]
async fn main() -> ExitCode {
    finish("search-bench", run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), BenchError> {
    let query = SearchQuery::parse("a")?;
    for &n in &args.others {
        let (_dir, url) = temp_database()?;
        let options = SqliteConnectOptions::from_str(&url)?.create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await?;
        let mut migrator = sqlx::migrate!("../backend/migrations/sqlite");
        migrator.migrations = std::borrow::Cow::Owned(migrator.migrations[..BEFORE_0011].to_vec());
        migrator.run(&pool).await?;
        fill(&pool, "mallory", n, "apple and an aardvark").await?;
        fill(&pool, "dave", args.mine, "an apricot").await?;
        let mut before = Vec::new();
        for _ in 0..args.searches {
            let started = Instant::now();
            let found = sqlx::query(SEARCH_BEFORE_0011)
                .bind("\"a\"*")
                .bind("dave")
                .fetch_all(&pool)
                .await?;
            before.push(started.elapsed());
            check(found.len(), args.mine)?;
        }
        pool.close().await;

        let started = Instant::now();
        let store = store::connect(&url).await?;
        let migrate = started.elapsed();
        let mut after = Vec::new();
        for _ in 0..args.searches {
            let started = Instant::now();
            let page = store.search_contexts("dave", &query, 50).await?;
            after.push(started.elapsed());
            check(page.hits.len(), args.mine)?;
        }
        before.sort();
        after.sort();
        println!(
            "N={n} mine={} before_median_ms={:.2} migrate_0011_s={:.2} after_median_ms={:.2} after_p95_ms={:.2}",
            args.mine,
            millis(percentile(&before, 0.5)),
            migrate.as_secs_f64(),
            millis(percentile(&after, 0.5)),
            millis(percentile(&after, 0.95)),
        );
    }
    Ok(())
}

/// The searching user's chats are one (`fill` puts up to 50 messages in a chat).
fn check(found: usize, mine: u64) -> Result<(), BenchError> {
    let chats = mine.div_ceil(PER_CHAT) as usize;
    if found == chats.min(50) {
        Ok(())
    } else {
        Err(format!("found {found} chats, expected {chats}").into())
    }
}

/// Writes `messages` complete messages of `owner`, `PER_CHAT` a chat, each `text` and a
/// number, in one transaction.
async fn fill(pool: &SqlitePool, owner: &str, messages: u64, text: &str) -> Result<(), BenchError> {
    let at = "2026-01-01T00:00:00.000000Z";
    let mut tx = pool.begin().await?;
    let mut context = String::new();
    for i in 0..messages {
        if i % PER_CHAT == 0 {
            context = Uuid::new_v4().to_string();
            sqlx::query(
                "INSERT INTO contexts (id, title, state, version, message_count, created_at, \
                 updated_at, owner) VALUES ($1, 'chat', 'Idle', 1, 0, $2, $2, $3)",
            )
            .bind(&context)
            .bind(at)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        let content = serde_json::json!([{"type": "text", "text": format!("{text} {i}")}]);
        sqlx::query(
            "INSERT INTO messages (id, context_id, seq, role, content, status, created_at, \
             version) VALUES ($1, $2, $3, 'user', $4, 'complete', $5, 1)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(&context)
        .bind((i % PER_CHAT) as i64)
        .bind(content.to_string())
        .bind(at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
