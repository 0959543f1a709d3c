//! `poll-bench`: how cheap a conditional poll of `GET /api/contexts/{id}/state` is.
//!
//! It starts the real application in this process on 127.0.0.1:0 (SQLite file in a
//! temporary folder, scripted model), creates a context with 20 messages (10 turns), and
//! beside it a bare axum route answering a two-byte body: the ceiling for this machine,
//! runtime and HTTP stack. Then 64 keep-alive connections (a minimal HTTP/1.1 client, one
//! request in flight per connection) send requests back to back to one target at a time,
//! `--seconds` (default 5) per target in all:
//!
//! - `bare`: the bare route;
//! - `state_304`: the state with `If-None-Match` of the current ETag (304, no body);
//! - `state_200`: the state without it (200 with the full JSON).
//!
//! The targets take turns in one-second slices, each after a short untimed warm-up on
//! fresh connections, so a neighbour's load that comes and goes weighs on all three alike
//! instead of skewing the ratios. Every answer must carry the expected status, or the run
//! fails. Output, one line per target:
//!
//! ```text
//! <name> rps=<requests per second> p50_ms=<x> p99_ms=<y> ratio_vs_bare=<rps / bare rps>
//!     cpu_us=<x> cpu_ratio_vs_bare=<bare cpu_us / cpu_us>
//! ```
//!
//! (on one line), where `cpu_us` is this process's CPU time (client and server, user and
//! system) per request made while that target ran, warm-ups included: less moved than
//! requests/s by a neighbour's load on a shared machine.
//!
//! Client and server share one multi-thread tokio runtime, hence the same cores: on a small
//! machine the client's own work is part of every number, equally for the three targets.
//! The `#` lines give the core count, the server's poll counters as a cross-check, and
//! what the handler itself costs per request, timed in a loop on one task: the snapshot
//! lookup every poll makes, and for a 200 also building and serializing the body.
//!
//! `--layers` adds `#` lines with the cost of the middleware stack, one layer at a time:
//! the same 304 poll sent in-process (`tower::ServiceExt::oneshot`, no HTTP, one task) to
//! the application built with the first k layers of `api::layers::STACK`, for every k,
//! beside the bare route; each line gives the time per request and what that layer added
//! to the one inside it. For the measurement only, each of those services (the bare
//! route's too) is boxed once, as tests call the application; the server runs the full
//! stack unboxed. The targets take turns for several rounds and each keeps its fastest,
//! so that a neighbour's load does not land on one layer's figure.
//!
//! `--split` splits the 304 poll's gap to the bare route into its parts, with three more
//! targets in the same rounds: `state_304_by_axum_serve` (the same application served by
//! `axum::serve` instead of our `serve`: what our connection bounds cost),
//! `bare_by_serve_rs` (the bare route served by our `serve`), and `bare_304_headers` (a
//! bare route answering 304 with the headers our 304 carries: what the longer answer
//! costs, client and kernel included). `--only a,b` measures only those targets (and
//! `bare`), e.g. to profile one.
//!
//! The binary runs on the server binary's allocator (mimalloc), as the server does.
//!
//! `--waiters N` measures long polls instead: see `waiters.rs`.

mod waiters;

use axum::routing::get;
use axum::Router;
use chatsync::api::layers::STACK;
use chatsync::api::App;
use chatsync::config::Config;
use chatsync::domain::{NewContext, Owner};
use chatsync::engine::Engine;
use chatsync::metrics::Metrics;
use chatsync::Application;
use chatsync_bench::{finish, millis, percentile, run_turn, temp_database, BenchError};
use clap::Parser;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use uuid::Uuid;

/// The allocator of the server binary (`backend/src/main.rs`): the application is measured
/// as it runs there; the bare route and the client get it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TURNS: usize = 10;
/// Long enough to open every connection and reach a steady state before timing.
const WARMUP: Duration = Duration::from_millis(200);
/// One turn of a target; the targets alternate slice by slice.
const SLICE: Duration = Duration::from_secs(1);

#[derive(Debug, Parser)]
#[command(
    name = "poll-bench",
    about = "Requests/s of conditional state polls (304) against a bare route, in-process"
)]
struct Args {
    /// Seconds each target is measured, in one-second slices.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,

    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    connections: u64,

    /// Also time the middleware stack a layer at a time, in-process (see above).
    #[arg(long)]
    layers: bool,

    /// Measure only the targets with these names (with `bare` first, for the ratios):
    /// e.g. to profile one of them.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,

    /// Also serve the 304 poll and the bare route the other way round (see above).
    #[arg(long)]
    split: bool,

    /// Measure long polls instead: this many held at once (e.g. 10000), the server in a
    /// child process so its memory is its own.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=15_000))]
    waiters: Option<u64>,

    /// With `--waiters`: contexts the waiters are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    contexts: u64,

    /// With `--waiters`: writes, one context at a time, each waking that context's waiters.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    writes: u64,

    /// Internal: run only the server, on this database, for `--waiters`.
    #[arg(long, hide = true)]
    serve: Option<String>,

    /// Internal: the served instance's `--max-waiters`.
    #[arg(long, hide = true, default_value_t = 20_000)]
    max_waiters: u64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match (&args.serve, args.waiters) {
        (Some(url), _) => waiters::serve(url, args.max_waiters).await,
        (None, Some(n)) => match temp_database() {
            Ok((_dir, url)) => waiters::run(&url, n, args.contexts, args.writes).await,
            Err(e) => Err(e),
        },
        (None, None) => run(args).await,
    };
    finish("poll-bench", result)
}

async fn run(args: Args) -> Result<(), BenchError> {
    let (_dir, url) = temp_database()?;
    let config = Config::try_parse_from([
        "chatsync",
        "--addr",
        "127.0.0.1:0",
        "--database-url",
        &url,
        "--scripted-chunk-delay-ms",
        "0",
        "--shutdown-grace-ms",
        "1000",
    ])?;
    let app = Application::build(config).await?;
    let app_addr = app.local_addr()?;
    let mut layered = Vec::new();
    if args.layers {
        for depth in 0..=STACK.len() {
            layered.push(app.router_with_layers(depth)?);
        }
    }
    let split = if args.split {
        Some(SplitServers::start(&app).await?)
    } else {
        None
    };
    let engine = app.engine().clone();
    let (stop_app, app_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = app_stopped.await;
    }));

    let id = engine
        .create_context(&Owner::local(), NewContext::default())
        .await?
        .record
        .id;
    for i in 0..TURNS {
        run_turn(
            &engine,
            id,
            format!("Message {i} of the polled conversation."),
        )
        .await?;
    }

    let bare_listener = TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = bare_listener.local_addr()?;
    let (stop_bare, bare_stopped) = oneshot::channel::<()>();
    let bare_router = Router::new().route("/", get(|| async { "ok" }));
    let bare = tokio::spawn(async move {
        axum::serve(bare_listener, bare_router)
            .with_graceful_shutdown(async {
                let _ = bare_stopped.await;
            })
            .await
    });

    let path = format!("/api/contexts/{id}/state");
    let first = Conn::open(app_addr)
        .await?
        .send(&get_request(&path, None))
        .await?;
    let etag = match (first.status, first.etag) {
        (200, Some(etag)) => etag,
        (status, etag) => {
            return Err(
                format!("the first state request answered {status} with ETag {etag:?}").into(),
            )
        }
    };
    println!(
        "# {} cores; client and server share one runtime; {} connections; state body {} bytes, {} messages",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.connections,
        first.body.len(),
        TURNS * 2
    );

    let mut targets = vec![
        ("bare", bare_addr, get_request("/", None), 200),
        ("state_304", app_addr, get_request(&path, Some(&etag)), 304),
        ("state_200", app_addr, get_request(&path, None), 200),
    ];
    if let Some(split) = &split {
        for (name, addr, req, expect) in split.targets(&path, &etag) {
            let head = Conn::open(addr).await?.send(&req).await?;
            println!("# {name}: {} response head bytes", head.head_len);
            targets.push((name, addr, req, expect));
        }
        println!(
            "# state_304: {} response head bytes",
            Conn::open(app_addr)
                .await?
                .send(&get_request(&path, Some(&etag)))
                .await?
                .head_len
        );
        println!(
            "# bare: {} response head bytes",
            Conn::open(bare_addr)
                .await?
                .send(&get_request("/", None))
                .await?
                .head_len
        );
    }
    if !args.only.is_empty() {
        targets.retain(|(name, ..)| *name == "bare" || args.only.iter().any(|o| o == name));
    }
    let mut latencies = vec![Vec::new(); targets.len()];
    // Per target: this process's CPU time (client and server) and the requests it served.
    let mut cpu = vec![(Duration::ZERO, 0u64); targets.len()];
    for _ in 0..args.seconds {
        for (((_, addr, req, expect), samples), spent) in
            targets.iter().zip(&mut latencies).zip(&mut cpu)
        {
            let before = process_cpu()?;
            let (measured, all) = drive(*addr, req.clone(), *expect, args.connections).await?;
            spent.0 += process_cpu()?.saturating_sub(before);
            spent.1 += all;
            samples.extend(measured);
        }
    }
    let measured = SLICE.as_secs_f64() * args.seconds as f64;
    let mut reference = None;
    for (((name, ..), mut load), (spent, served)) in targets.into_iter().zip(latencies).zip(cpu) {
        load.sort_unstable();
        let rps = load.len() as f64 / measured;
        let cpu_us = spent.as_secs_f64() * 1e6 / served.max(1) as f64;
        let (bare_rps, bare_cpu_us) = *reference.get_or_insert((rps, cpu_us));
        println!(
            "{name} rps={rps:.0} p50_ms={:.3} p99_ms={:.3} ratio_vs_bare={:.3} cpu_us={cpu_us:.1} \
             cpu_ratio_vs_bare={:.3}",
            millis(percentile(&load, 0.5)),
            millis(percentile(&load, 0.99)),
            rps / bare_rps,
            bare_cpu_us / cpu_us
        );
    }
    println!("{}", handler_costs(&engine, id).await?);
    if !layered.is_empty() {
        layer_costs(layered, &path, &etag).await?;
    }
    let metrics = engine.metrics();
    println!(
        "# server counted polls={} not_modified={}",
        Metrics::get(&metrics.polls),
        Metrics::get(&metrics.polls_not_modified)
    );

    if let Some(split) = split {
        split.stop().await?;
    }
    let _ = stop_bare.send(());
    let _ = stop_app.send(());
    bare.await??;
    server.await??;
    Ok(())
}

/// The `#` line with the per-request work of the state handler, without HTTP.
async fn handler_costs(engine: &Engine, id: Uuid) -> Result<String, BenchError> {
    const CALLS: u32 = 100_000;
    let started = Instant::now();
    for _ in 0..CALLS {
        drop(std::hint::black_box(engine.snapshot(id).await?));
    }
    let lookup = started.elapsed() / CALLS;
    let snapshot = engine.snapshot(id).await?;
    let started = Instant::now();
    for _ in 0..CALLS / 10 {
        std::hint::black_box(serde_json::to_vec(&snapshot.chat_state(None))?);
    }
    let body = started.elapsed() / (CALLS / 10);
    Ok(format!(
        "# per request, one task: snapshot lookup {:.3} us (every poll); state body build and \
         JSON {:.3} us (200 only)",
        lookup.as_secs_f64() * 1e6,
        body.as_secs_f64() * 1e6
    ))
}

/// The `#` lines of `--layers`: a 304 poll in-process through the application with 0, 1,
/// ... layers, and the bare route for scale. The targets take turns, round after round,
/// and each keeps its fastest round: a neighbour's load only ever slows a round down.
async fn layer_costs(routers: Vec<App>, path: &str, etag: &str) -> Result<(), BenchError> {
    const ROUNDS: usize = 7;
    let bare = App::new(Router::new().route("/", get(|| async { "ok" })));
    let mut best = vec![Duration::MAX; routers.len() + 1];
    for _ in 0..ROUNDS {
        let cost = oneshot_cost(&bare, "/", None, 200).await?;
        best[0] = best[0].min(cost);
        for (depth, router) in routers.iter().enumerate() {
            let cost = oneshot_cost(router, path, Some(etag), 304).await?;
            best[depth + 1] = best[depth + 1].min(cost);
        }
    }
    println!(
        "# in-process: bare route {:.3} us per request",
        best[0].as_secs_f64() * 1e6
    );
    let mut inner = None;
    for (depth, &cost) in best[1..].iter().enumerate() {
        let name = match depth.checked_sub(1) {
            Some(i) => STACK[i].name(),
            None => "routes, auth and handler",
        };
        let added = inner.map_or(cost, |inner: Duration| cost.saturating_sub(inner));
        println!(
            "# in-process: layers={depth} +{name} us_per_request={:.3} added_us={:.3}",
            cost.as_secs_f64() * 1e6,
            added.as_secs_f64() * 1e6
        );
        inner = Some(cost);
    }
    Ok(())
}

/// Mean time of one request through `router`, called in-process on this task.
async fn oneshot_cost(
    router: &App,
    path: &str,
    if_none_match: Option<&str>,
    expect: u16,
) -> Result<Duration, BenchError> {
    use tower::ServiceExt;
    const WARMUP_CALLS: u32 = 1_000;
    const CALLS: u32 = 10_000;
    let mut started = Instant::now();
    for call in 0..WARMUP_CALLS + CALLS {
        if call == WARMUP_CALLS {
            started = Instant::now();
        }
        let mut request = axum::http::Request::get(path).header("host", "127.0.0.1");
        if let Some(tag) = if_none_match {
            request = request.header("if-none-match", tag);
        }
        let response = router
            .clone()
            .oneshot(request.body(axum::body::Body::empty())?)
            .await?;
        if response.status() != expect {
            return Err(format!("{path} answered {} in-process", response.status()).into());
        }
    }
    Ok(started.elapsed() / CALLS)
}

/// One GET with keep-alive (the HTTP/1.1 default) and an optional `If-None-Match`.
fn get_request(path: &str, if_none_match: Option<&str>) -> Arc<[u8]> {
    match if_none_match {
        Some(tag) => request("GET", path, &[("If-None-Match", tag)], b""),
        None => request("GET", path, &[], b""),
    }
}

/// One keep-alive HTTP/1.1 request with these headers and body.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Arc<[u8]> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes.into()
}

/// This process's CPU time so far, user and system (`/proc/self/stat`, in the kernel's
/// fixed 100 ticks a second).
fn process_cpu() -> Result<Duration, BenchError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok(Duration::from_millis((user + system) * 10)),
        _ => Err("cannot read this process's CPU time from /proc/self/stat".into()),
    }
}

/// Runs `connections` clients against `addr` for the warm-up plus one slice; returns the
/// latencies of the requests started inside the slice, and how many were made in all.
async fn drive(
    addr: SocketAddr,
    request: Arc<[u8]>,
    expect: u16,
    connections: u64,
) -> Result<(Vec<Duration>, u64), BenchError> {
    let measure_from = Instant::now() + WARMUP;
    let until = measure_from + SLICE;
    let mut clients = JoinSet::new();
    for _ in 0..connections {
        let request = request.clone();
        clients.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut latencies = Vec::new();
            let mut all = 0u64;
            loop {
                let started = Instant::now();
                if started >= until {
                    return Ok::<_, io::Error>((latencies, all));
                }
                all += 1;
                let response = conn.send(&request).await?;
                if response.status != expect {
                    return Err(io::Error::other(format!(
                        "expected status {expect}, got {}",
                        response.status
                    )));
                }
                if started >= measure_from {
                    latencies.push(started.elapsed());
                }
            }
        });
    }
    let (mut measured, mut all) = (Vec::new(), 0);
    while let Some(done) = clients.join_next().await {
        let (latencies, count) = done??;
        measured.extend(latencies);
        all += count;
    }
    Ok((measured, all))
}

/// A minimal HTTP/1.1 client connection: enough to read a status, an ETag and a body
/// framed by Content-Length, which is all these servers send.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Response {
    head_len: usize,
    status: u16,
    etag: Option<String>,
    body: Vec<u8>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad response: {what}"))
}

impl Conn {
    async fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    async fn send(&mut self, request: &[u8]) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        let head_len = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_len]).map_err(|_| invalid("head"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("status line"))?;
        let mut etag = None;
        let mut content_length = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(value.parse().map_err(|_| invalid("Content-Length"))?);
            } else if name.eq_ignore_ascii_case("etag") {
                etag = Some(value.to_owned());
            }
        }
        let body_len = match (status, content_length) {
            (204 | 304, _) => 0,
            (_, Some(n)) => n,
            (_, None) => return Err(invalid("no Content-Length")),
        };
        while self.buf.len() < head_len + body_len {
            self.fill().await?;
        }
        let body = self.buf[head_len..head_len + body_len].to_vec();
        self.buf.drain(..head_len + body_len);
        Ok(Response {
            head_len,
            status,
            etag,
            body,
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(8 * 1024);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }
}

/// `--split`: the same 304 poll and the bare route, each also served the other way
/// (the application by `axum::serve`, the bare route by our `serve`), and a bare route
/// answering 304 with the headers our 304 carries: what the serve loop, the headers and
/// the layers each cost, in the same run.
struct SplitServers {
    stack_by_axum: SocketAddr,
    bare_by_serve: SocketAddr,
    bare_with_headers: SocketAddr,
    stop: Vec<oneshot::Sender<()>>,
    servers: JoinSet<io::Result<()>>,
}

impl SplitServers {
    async fn start(app: &Application) -> Result<Self, BenchError> {
        use axum::ServiceExt as _;
        let mut stop = Vec::new();
        let mut servers = JoinSet::new();
        let stack = app.service()?;
        let (tx, rx) = oneshot::channel::<()>();
        stop.push(tx);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let stack_by_axum = listener.local_addr()?;
        servers.spawn(async move {
            axum::serve(
                listener,
                stack.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
        });

        let (tx, rx) = oneshot::channel::<()>();
        stop.push(tx);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let bare_by_serve = listener.local_addr()?;
        let limits = app.connection_limits();
        servers.spawn(async move {
            chatsync::serve::serve(
                listener,
                Router::new().route("/", get(|| async { "ok" })),
                limits,
                async {
                    let _ = rx.await;
                },
            )
            .await;
            Ok(())
        });

        let (tx, rx) = oneshot::channel::<()>();
        stop.push(tx);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let bare_with_headers = listener.local_addr()?;
        let router = Router::new().route(
            "/",
            get(|| async {
                use axum::http::{header, HeaderValue, StatusCode};
                (
                    StatusCode::NOT_MODIFIED,
                    [
                        (header::ETAG, HeaderValue::from_static("\"42\"")),
                        (
                            axum::http::HeaderName::from_static("x-request-id"),
                            HeaderValue::from_static("0190a1b2-c3d4-8e5f-8a6b-7c8d9e0f1a2b"),
                        ),
                        (
                            header::CONTENT_SECURITY_POLICY,
                            HeaderValue::from_static(chatsync::api::CONTENT_SECURITY_POLICY),
                        ),
                        (
                            header::X_CONTENT_TYPE_OPTIONS,
                            HeaderValue::from_static("nosniff"),
                        ),
                        (
                            header::REFERRER_POLICY,
                            HeaderValue::from_static("no-referrer"),
                        ),
                    ],
                )
            }),
        );
        servers.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        Ok(SplitServers {
            stack_by_axum,
            bare_by_serve,
            bare_with_headers,
            stop,
            servers,
        })
    }

    fn targets(&self, path: &str, etag: &str) -> Vec<(&'static str, SocketAddr, Arc<[u8]>, u16)> {
        vec![
            (
                "bare_by_serve_rs",
                self.bare_by_serve,
                get_request("/", None),
                200,
            ),
            (
                "bare_304_headers",
                self.bare_with_headers,
                get_request("/", None),
                304,
            ),
            (
                "state_304_by_axum_serve",
                self.stack_by_axum,
                get_request(path, Some(etag)),
                304,
            ),
        ]
    }

    async fn stop(mut self) -> Result<(), BenchError> {
        for tx in self.stop.drain(..) {
            let _ = tx.send(());
        }
        while let Some(done) = self.servers.join_next().await {
            done??;
        }
        Ok(())
    }
}
