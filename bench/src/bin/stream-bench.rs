//! `stream-bench`: what appending one streamed chunk costs as the reply grows.
//!
//! For each chunk count N, a model streams a reply of N chunks of 16 bytes as fast as the
//! engine takes them, through the real engine and the SQLite file store, with a snapshot
//! published after every chunk (`stream_publish` zero: the worst case for an engine that
//! copies what a snapshot shares). Each turn is timed from `send_message` to its settled
//! answer; the time per chunk is the median turn over N.
//!
//! Output, one line per N and then the ratio of the time per chunk at the largest and
//! smallest N:
//!
//! ```text
//! chunks=<n> reply_kb=<k> turns=<t> median_ms=<x> per_chunk_us=<y>
//! ratio_<max>_vs_<min>=<r>
//! ```
//!
//! An append that costs O(chunk) keeps the ratio near 1; one that copies the reply so far
//! makes the time per chunk grow with N (the whole turn with N squared). The `#` line
//! after each N counts the saves of a turn: each writes the reply so far, so they are the
//! part of the turn that does grow with the reply.

use async_trait::async_trait;
use chatsync::domain::{NewContext, Owner};
use chatsync::engine::{Deps, Engine, EngineSettings};
use chatsync::llm::{Model, ModelChunk, ModelError, ModelRequest, ModelStream};
use chatsync::metrics::Metrics;
use chatsync::store;
use chatsync::tools::{ToolRegistry, DEFAULT_TOOL_TIMEOUT};
use chatsync_bench::{finish, millis, percentile, run_turn, temp_database, BenchError};
use clap::Parser;
use futures::StreamExt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const CHUNK: &str = "sixteen bytes.. ";

#[derive(Debug, Parser)]
#[command(
    name = "stream-bench",
    about = "Times streamed replies against their length (engine + SQLite file, no HTTP)"
)]
struct Args {
    /// Reply lengths to measure, in chunks of 16 bytes.
    #[arg(required = true, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    chunks: Vec<u64>,

    /// Timed turns per reply length.
    #[arg(short = 'k', long = "turns", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    turns: u64,
}

/// Streams `chunks` chunks of [`CHUNK`] with no delay.
#[derive(Debug)]
struct Firehose {
    chunks: usize,
}

#[async_trait]
impl Model for Firehose {
    async fn stream(&self, _request: ModelRequest) -> Result<ModelStream, ModelError> {
        let chunks = (0..self.chunks).map(|_| Ok(ModelChunk::Text(CHUNK.to_owned())));
        Ok(futures::stream::iter(chunks).boxed())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    finish("stream-bench", run(args).await)
}

async fn run(args: Args) -> Result<(), BenchError> {
    let mut per_chunk = Vec::with_capacity(args.chunks.len());
    for &n in &args.chunks {
        let (_dir, url) = temp_database()?;
        let metrics = Arc::new(Metrics::default());
        let engine = Engine::new(Deps {
            store: store::connect(&url).await?,
            model: Arc::new(Firehose {
                chunks: usize::try_from(n)?,
            }),
            tools: Arc::new(ToolRegistry::builtin(DEFAULT_TOOL_TIMEOUT)),
            metrics: metrics.clone(),
            settings: EngineSettings {
                stream_publish: Duration::ZERO,
                max_reply_chars: usize::MAX,
                max_turn: Duration::from_secs(3600),
                ..EngineSettings::default()
            },
        });
        let id = engine
            .create_context(&Owner::local(), NewContext::default())
            .await?
            .record
            .id;
        // One untimed turn warms the database and the allocator.
        run_turn(&engine, id, "warm-up".into()).await?;
        let saves_before = Metrics::get(&metrics.saves);
        let mut samples = Vec::with_capacity(usize::try_from(args.turns)?);
        for turn in 0..args.turns {
            samples.push(run_turn(&engine, id, format!("timed turn {turn}")).await?);
        }
        samples.sort_unstable();
        let median = percentile(&samples, 0.5);
        let us = median.as_secs_f64() * 1e6 / n as f64;
        println!(
            "chunks={n} reply_kb={:.0} turns={} median_ms={:.1} per_chunk_us={us:.2}",
            (n as usize * CHUNK.len()) as f64 / 1024.0,
            args.turns,
            millis(median),
        );
        // The store is written every `stream_flush` and every MAX_UNSAVED_VERSIONS
        // versions while streaming, each time with the reply so far.
        let saves = Metrics::get(&metrics.saves) - saves_before;
        println!("# saves_per_turn={:.1}", saves as f64 / args.turns as f64);
        per_chunk.push((n, us));
    }
    let smallest = per_chunk.iter().min_by_key(|(n, _)| *n);
    let largest = per_chunk.iter().max_by_key(|(n, _)| *n);
    if let (Some((lo, lo_us)), Some((hi, hi_us))) = (smallest, largest) {
        println!("ratio_{hi}_vs_{lo}={:.3}", hi_us / lo_us);
    }
    Ok(())
}
