//! `poll-bench --waiters N`: many held long polls, one writer.
//!
//! The server runs as a child process (this binary with `--serve`), so its memory is its
//! own (`VmRSS` and the peak `VmHWM` from /proc). The client opens N keep-alive
//! connections, each first answering one `GET /healthz` (the server's resident size then
//! gives what an open connection costs), then holding `GET /state?since=V&wait_ms=30000`
//! on one of `--contexts` contexts (spread evenly) until the server's `chatsync_held_polls`
//! gauge says all are held (the size then gives what holding a poll adds). Then one writer appends a message to one
//! context at a time (the deprecated CRUD route: exactly one published change, no turn)
//! and every waiter of that context measures the time from the write's start until its
//! poll answered 200; it then holds again on the new version. The writer starts the next
//! write once all waiters of the last one answered. Output:
//!
//! ```text
//! waiters=<N> contexts=<C> writes=<W> wake_p50_ms=<x> wake_p99_ms=<y> wake_max_ms=<z>
//! server_rss_mb idle=<a> connected=<b> held=<c> peak=<d>
//! per_connection_kb=<(b - a) / N> per_held_poll_kb=<(c - b) / N>
//! ```

use super::{request, Conn};
use chatsync::config::Config;
use chatsync::Application;
use chatsync_bench::{millis, percentile, BenchError};
use clap::Parser;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Barrier};
use tokio::task::JoinSet;
use uuid::Uuid;

/// How long a held poll waits before answering 304 (the server's maximum).
const HOLD_MS: u64 = 30_000;
/// Bound on every wait of the benchmark, so a lost wake-up is an error, not a hang.
const DEADLINE: Duration = Duration::from_secs(60);

/// The child's side: serve on 127.0.0.1:0 until standard input closes.
pub async fn serve(database_url: &str, max_waiters: u64) -> Result<(), BenchError> {
    let config = Config::try_parse_from([
        "chatsync",
        "--addr",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--max-waiters",
        &max_waiters.to_string(),
        "--shutdown-grace-ms",
        "1000",
    ])?;
    let app = Application::build(config).await?;
    println!("listening {}", app.local_addr()?);
    std::io::stdout().flush()?;
    app.run_until(async {
        // Standard input closes when the parent ends, however it ends.
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().lines().count()).await;
    })
    .await?;
    Ok(())
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(database_url: &str, max_waiters: u64) -> Result<Server, BenchError> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--serve",
                database_url,
                "--max-waiters",
                &max_waiters.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .strip_prefix("listening ")
            .ok_or_else(|| format!("the server said {line:?}"))?
            .trim()
            .parse()?;
        Ok(Server { child, addr })
    }

    /// Resident and peak resident size, in MiB.
    fn memory(&self) -> Result<(f64, f64), BenchError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = |key: &str| -> Result<f64, BenchError> {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .ok_or_else(|| format!("no {key} in /proc status"))?;
            Ok(line.trim().trim_end_matches("kB").trim().parse::<f64>()?)
        };
        Ok((kb("VmRSS:")? / 1024.0, kb("VmHWM:")? / 1024.0))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_body(status: u16, body: &[u8]) -> Result<serde_json::Value, BenchError> {
    if !(200..300).contains(&status) {
        return Err(format!(
            "expected 2xx, got {status}: {}",
            String::from_utf8_lossy(body)
        )
        .into());
    }
    Ok(serde_json::from_slice(body)?)
}

fn post_json(path: &str, body: &str) -> Arc<[u8]> {
    request(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

async fn held_polls(addr: SocketAddr) -> Result<u64, BenchError> {
    let mut conn = Conn::open(addr).await?;
    let r = conn.send(&request("GET", "/metrics", &[], b"")).await?;
    let text = String::from_utf8(r.body)?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("chatsync_held_polls "))
        .ok_or("no chatsync_held_polls in /metrics")?;
    Ok(value.trim().parse()?)
}

/// One waiter: holds polls on one context until the run ends, reporting each wake.
async fn waiter(
    addr: SocketAddr,
    context: Uuid,
    mut version: u64,
    mut written_at: watch::Receiver<Option<Instant>>,
    wakes: mpsc::UnboundedSender<Duration>,
    connected: Arc<Barrier>,
) -> Result<(), BenchError> {
    let mut conn = Conn::open(addr).await?;
    let r = conn.send(&request("GET", "/healthz", &[], b"")).await?;
    if r.status != 200 {
        return Err(format!("/healthz answered {}", r.status).into());
    }
    connected.wait().await;
    connected.wait().await;
    loop {
        let path = format!("/api/contexts/{context}/state?since={version}&wait_ms={HOLD_MS}");
        let r = conn.send(&request("GET", &path, &[], b"")).await?;
        match r.status {
            200 => {
                let at = *written_at.borrow_and_update();
                let state = json_body(r.status, &r.body)?;
                version = state["version"].as_u64().ok_or("no version")?;
                let Some(at) = at else { continue };
                if wakes.send(at.elapsed()).is_err() {
                    return Ok(());
                }
            }
            // The wait ran out on a context nobody wrote to: hold again.
            304 => {}
            other => return Err(format!("a held poll answered {other}").into()),
        }
        if wakes.is_closed() {
            return Ok(());
        }
    }
}

pub async fn run(
    database_url: &str,
    waiters: u64,
    contexts: u64,
    writes: u64,
) -> Result<(), BenchError> {
    let server = Server::start(database_url, waiters + 100)?;
    let addr = server.addr;
    let mut control = Conn::open(addr).await?;
    let mut ids = Vec::new();
    for _ in 0..contexts {
        let r = control.send(&post_json("/api/contexts", "{}")).await?;
        let summary = json_body(r.status, &r.body)?;
        let id: Uuid = summary["id"].as_str().ok_or("no id")?.parse()?;
        let version = summary["version"].as_u64().ok_or("no version")?;
        ids.push((id, version));
    }
    let (idle_rss, _) = server.memory()?;

    let per_context = waiters / contexts;
    let held = per_context * contexts;
    let (wake_tx, mut wake_rx) = mpsc::unbounded_channel();
    let connected = Arc::new(Barrier::new(usize::try_from(held)? + 1));
    let mut clocks = Vec::new();
    let mut tasks = JoinSet::new();
    for &(id, version) in &ids {
        let (tx, rx) = watch::channel(None);
        clocks.push(tx);
        for _ in 0..per_context {
            let waiter = waiter(
                addr,
                id,
                version,
                rx.clone(),
                wake_tx.clone(),
                connected.clone(),
            );
            tasks.spawn(waiter);
        }
    }
    drop(wake_tx);
    // Every connection open and idle after one request; then all hold a poll.
    tokio::time::timeout(DEADLINE, connected.wait())
        .await
        .map_err(|_| "not every connection opened")?;
    let (connected_rss, _) = server.memory()?;
    connected.wait().await;
    let started = Instant::now();
    while held_polls(addr).await? < held {
        if started.elapsed() > DEADLINE {
            return Err(format!("fewer than {held} polls held after {DEADLINE:?}").into());
        }
        if let Some(done) = tasks.try_join_next() {
            done??;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (held_rss, _) = server.memory()?;

    let mut samples = Vec::new();
    for w in 0..writes {
        let k = usize::try_from(w % contexts)?;
        let (id, _) = ids[k];
        clocks[k].send_replace(Some(Instant::now()));
        let body = format!(r#"{{"role":"user","content":"write {w}"}}"#);
        let r = control
            .send(&post_json(&format!("/api/contexts/{id}/messages"), &body))
            .await?;
        json_body(r.status, &r.body)?;
        for _ in 0..per_context {
            let wake = tokio::time::timeout(DEADLINE, wake_rx.recv())
                .await
                .map_err(|_| "a waiter was not woken")?
                .ok_or("every waiter stopped")?;
            samples.push(wake);
        }
        clocks[k].send_replace(None);
    }
    let (_, peak_rss) = server.memory()?;
    drop(wake_rx);
    tasks.abort_all();
    samples.sort_unstable();
    println!(
        "waiters={held} contexts={contexts} writes={writes} wake_p50_ms={:.2} wake_p99_ms={:.2} wake_max_ms={:.2}",
        millis(percentile(&samples, 0.5)),
        millis(percentile(&samples, 0.99)),
        millis(percentile(&samples, 1.0)),
    );
    let per = |mb: f64| mb * 1024.0 / held as f64;
    println!(
        "server_rss_mb idle={idle_rss:.1} connected={connected_rss:.1} held={held_rss:.1} peak={peak_rss:.1}"
    );
    println!(
        "per_connection_kb={:.2} per_held_poll_kb={:.2}",
        per(connected_rss - idle_rss),
        per(held_rss - connected_rss)
    );
    Ok(())
}
