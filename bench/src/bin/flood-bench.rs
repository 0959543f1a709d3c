//! `flood-bench`: how fast a busy chat acknowledges a flood of `?wait=false` sends, and
//! what floods cost the server in memory.
//!
//! It starts the real server binary (`CHATSYNC_BIN`, default `target/debug/chatsync`) on
//! 127.0.0.1:0 with a temporary SQLite file and makes one chat busy with a long `/slow`
//! turn. First `--approves` (default 150) connections at once each post an
//! `approve_tools` of about 1 MiB (128 long ids) and give up after 0.2 s: none may be
//! applied (2xx), and the server's peak memory is printed before and after. Then
//! `--sends` (default 600) connections at once each send one message with `?wait=false`.
//! Every answer must be 202 (queued) or 429 (`queue_full`), or the run fails. Output:
//!
//! ```text
//! approves=<n> body_kib=<size> answered=<within 0.2 s> dropped=<not answered by then>
//!   peak_rss_kib_before=<VmHWM before> peak_rss_kib_after=<VmHWM after> rss_kib_after=<VmRSS>
//! sends=<n> accepted=<202s> queue_full=<429s> max_ms=<slowest answer> p50_ms=<x> p99_ms=<y>
//! peak_rss_kib=<VmHWM of the server process>
//! ```

use chatsync_bench::{finish, millis, percentile, BenchError};
use clap::Parser;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

#[derive(Debug, Parser)]
#[command(
    name = "flood-bench",
    about = "Acknowledgement latency of sends to a busy chat"
)]
struct Args {
    /// Concurrent sends to the busy chat.
    #[arg(long, default_value_t = 600)]
    sends: usize,
    /// Concurrent `approve_tools` of about 1 MiB each, dropped after 0.2 s, before the sends.
    #[arg(long, default_value_t = 150)]
    approves: usize,
}

/// How long an approving client waits for its answer before it gives up.
const APPROVE_PATIENCE: Duration = Duration::from_millis(200);
/// The most ids one approval may name, and a length that brings the body near 1 MiB.
const APPROVE_IDS: usize = 128;
const APPROVE_ID_CHARS: usize = 8_180;

/// One HTTP/1.1 request on its own connection; returns the status code.
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), BenchError> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {answer:?}"))?;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

/// A memory figure of the process from `/proc` (`VmHWM` peak, `VmRSS` now), in KiB.
fn memory_kib(pid: u32, field: &str) -> Result<u64, BenchError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc status").into())
}

fn peak_rss_kib(pid: u32) -> Result<u64, BenchError> {
    memory_kib(pid, "VmHWM")
}

/// `--approves` clients at once, each posting a 1 MiB `approve_tools` to the busy chat and
/// leaving after [`APPROVE_PATIENCE`]; the server's peak memory before and after.
async fn approve_flood(addr: &str, id: &str, approves: usize, pid: u32) -> Result<(), BenchError> {
    let ids: Vec<String> = (0..APPROVE_IDS)
        .map(|i| format!("{i:0>width$}", width = APPROVE_ID_CHARS))
        .collect();
    let body = serde_json::json!({ "tool_call_ids": ids }).to_string();
    let path = format!("/api/contexts/{id}/actions/approve_tools");
    let before = peak_rss_kib(pid)?;
    let mut tasks = JoinSet::new();
    for _ in 0..approves {
        let (addr, path, body) = (addr.to_owned(), path.clone(), body.clone());
        tasks.spawn(async move {
            let answer =
                tokio::time::timeout(APPROVE_PATIENCE, request(&addr, "POST", &path, &body)).await;
            match answer {
                Err(_) => Ok(None),
                Ok(answered) => answered.map(|(status, _)| Some(status)),
            }
        });
    }
    let (mut answered, mut dropped) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined?? {
            Some(status) if (200..300).contains(&status) => {
                return Err(format!("an approval during a turn answered {status}").into());
            }
            Some(_) => answered += 1,
            None => dropped += 1,
        }
    }
    println!(
        "approves={approves} body_kib={} answered={answered} dropped={dropped} \
         peak_rss_kib_before={before} peak_rss_kib_after={} rss_kib_after={}",
        body.len() / 1024,
        peak_rss_kib(pid)?,
        memory_kib(pid, "VmRSS")?,
    );
    Ok(())
}

async fn run(args: Args) -> Result<(), BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("chatsync-flood")
        .tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let binary = std::env::var("CHATSYNC_BIN").unwrap_or_else(|_| "target/debug/chatsync".into());
    let mut child = Command::new(binary)
        .args(["--addr", "127.0.0.1:0", "--database-url", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .ok_or("the server exited before printing its address")??;
        if let Some(url) = line.strip_prefix("chatsync listening on ") {
            break url.trim().trim_start_matches("http://").to_owned();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let result = flood(&addr, &args, child.id()).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn flood(addr: &str, args: &Args, pid: u32) -> Result<(), BenchError> {
    let sends = args.sends;
    let (status, body) = request(addr, "POST", "/api/contexts", "{}").await?;
    if status != 201 {
        return Err(format!("create: {status} {body}").into());
    }
    let created: serde_json::Value = serde_json::from_str(&body)?;
    let id = created["id"].as_str().ok_or("no id")?.to_owned();
    let send = format!("/api/contexts/{id}/actions/send_message?wait=false");
    let (status, _) = request(addr, "POST", &send, r#"{"content": "/slow 300"}"#).await?;
    if status != 202 {
        return Err(format!("the busy turn did not start: {status}").into());
    }
    approve_flood(addr, &id, args.approves, pid).await?;
    let mut tasks = JoinSet::new();
    for i in 0..sends {
        let (addr, send) = (addr.to_owned(), send.clone());
        tasks.spawn(async move {
            let started = Instant::now();
            let body = format!(r#"{{"content": "flood {i}"}}"#);
            let (status, _) = request(&addr, "POST", &send, &body).await?;
            Ok::<_, BenchError>((status, started.elapsed()))
        });
    }
    let (mut accepted, mut full, mut took) = (0, 0, Vec::with_capacity(sends));
    while let Some(joined) = tasks.join_next().await {
        let (status, elapsed) = joined??;
        match status {
            202 => accepted += 1,
            429 => full += 1,
            other => return Err(format!("a send answered {other}").into()),
        }
        took.push(elapsed);
    }
    took.sort();
    let max = took.last().copied().unwrap_or(Duration::ZERO);
    println!(
        "sends={sends} accepted={accepted} queue_full={full} max_ms={:.1} p50_ms={:.1} p99_ms={:.1}",
        millis(max),
        millis(percentile(&took, 0.5)),
        millis(percentile(&took, 0.99)),
    );
    println!("peak_rss_kib={}", peak_rss_kib(pid)?);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    finish("flood-bench", run(Args::parse()).await)
}
