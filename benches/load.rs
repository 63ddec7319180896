//! Load harness: requests per second and latency of one `GET /hello` over loopback,
//! through seven servers started here, driven one after another by `wrk`.
//!
//! - `bare`: the route without auth (the baseline);
//! - `floor`: a layer that inserts one constant extension and checks nothing, the
//!   least any middleware attaching an identity costs in axum;
//! - `handwritten`: a hand-written middleware, SHA-256 of the bearer, a moka hit,
//!   else a sled read: what an app might write instead of scopegate;
//! - `layer`: scopegate's layer authenticating the (cached, live) token, the
//!   handler demanding nothing;
//! - `guarded`: the layer plus `RequireScope<DataRead>`;
//! - `floor_wrapped` and `guarded_wrapped`: `floor` and `guarded` with the layer
//!   wrapped around the router rather than added with `Router::layer`, which
//!   spares axum boxing the layered route's service and future per request.
//!
//! Every server gets the same request, `Authorization: Bearer <live token>`
//! included. Rounds run the servers back to back in a rotating order; the table
//! shows medians over rounds, and the median (and range) of each round's ratio
//! to that round's `bare` run.
//!
//! `cargo bench -p scopegate-benches --bench load` (installs `wrk` with apt if it is
//! missing and we are root). `LOAD_SECONDS` (default 8) and `LOAD_ROUNDS`
//! (default 3) set the length of a run; `LOAD_CONNECTIONS` (default 32) the load;
//! `LOAD_SERVERS` (say `bare,guarded`) runs only those servers; `LOAD_WORKERS` (default
//! 2) sets the runtime's worker threads.

#![allow(missing_docs)]

mod common;

use std::{convert::Infallible, net::SocketAddr, process::Command};

use axum::{extract::Request, response::Response, ServiceExt};
use common::{chosen, hello::hello_apps, median, setting};
use scopegate::store::CacheConfig;
use tower::Service;

/// Serves `app` (a router, or a layer wrapped around one) on a loopback port.
async fn serve<S>(app: S) -> SocketAddr
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = ServiceExt::<Request>::into_make_service(app);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One `wrk` run's requests per second, p50 and p99 (milliseconds).
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    /// This process's CPU time (user + system) per request, in microseconds.
    cpu_us: f64,
}

/// CPU time this process has used, user and system, in seconds (from `/proc`).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

/// `getconf CLK_TCK`, asked once: 100 on Linux unless the kernel was built otherwise.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn millis(value: &str) -> f64 {
    let (number, factor) = if let Some(v) = value.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (value, 1.0)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * factor
}

fn wrk(addr: SocketAddr, bearer: &str, seconds: u32, connections: u32) -> Run {
    let cpu_before = process_cpu_seconds();
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .args(["-H", &format!("Authorization: Bearer {bearer}")])
        .arg(format!("http://{addr}/hello"))
        .output()
        .expect("run wrk");
    let cpu = process_cpu_seconds() - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "a server answered errors under load:\n{text}"
    );
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk's output:\n{text}"))
    };
    let rps: f64 = field("Requests/sec:").parse().unwrap();
    Run {
        rps,
        p50: millis(&field("50%")),
        p99: millis(&field("99%")),
        cpu_us: cpu * 1e6 / (rps * f64::from(seconds)),
    }
}

fn ensure_wrk() {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return;
    }
    eprintln!("wrk is missing: installing it with apt-get");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "install wrk (Debian package `wrk`) and run again"
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench --list`
    }
    ensure_wrk();
    let (seconds, rounds) = (setting("LOAD_SECONDS", 8u32), setting("LOAD_ROUNDS", 3u32));
    let connections = setting("LOAD_CONNECTIONS", 32u32);
    let runtime = common::runtime_with_workers(setting("LOAD_WORKERS", 2usize));
    let dir = common::scratch_dir();

    let (servers, bearer) = runtime.block_on(async {
        let apps = hello_apps(dir.path(), CacheConfig::default()).await;
        let bearer = apps.token;

        let chosen = |name: &str| chosen("LOAD_SERVERS", name);
        let mut servers = Vec::new();
        for (name, router) in [
            ("bare", apps.bare),
            ("floor", apps.floor),
            ("handwritten", apps.handwritten),
            ("layer", apps.layer),
            ("guarded", apps.guarded),
        ] {
            if chosen(name) {
                servers.push((name, serve(router).await));
            }
        }
        if chosen("floor_wrapped") {
            servers.push(("floor_wrapped", serve(apps.floor_wrapped).await));
        }
        if chosen("guarded_wrapped") {
            servers.push(("guarded_wrapped", serve(apps.guarded_wrapped).await));
        }
        (servers, bearer)
    });

    // Warm every server (and its cache) before measuring.
    for (_, addr) in &servers {
        wrk(*addr, &bearer, 1, connections);
    }
    // Indexed by server, then by round.
    let mut runs_by_round: Vec<Vec<Run>> = servers.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds as usize {
        for i in 0..servers.len() {
            let index = (i + round) % servers.len();
            let run = wrk(servers[index].1, &bearer, seconds, connections);
            eprintln!(
                "round {round}: {:<12} {:>9.0} req/s {:>6.1} µs CPU/request",
                servers[index].0, run.rps, run.cpu_us
            );
            runs_by_round[index].push(run);
        }
    }
    // Each round's ratio to that round's bare run, so a drift of the machine's
    // speed between rounds cancels; the table shows their median and range.
    let bare: Vec<f64> = servers
        .iter()
        .position(|(name, _)| *name == "bare")
        .map_or_else(Vec::new, |bare| {
            runs_by_round[bare].iter().map(|r| r.rps).collect()
        });
    println!("\nGET /hello, wrk -t1 -c{connections} -d{seconds}s, {rounds} rounds, medians\n");
    println!("| server | req/s | p50 ms | p99 ms | × bare (rounds' range) | server CPU µs/req |");
    println!("|---|---|---|---|---|---|");
    for ((name, _), runs) in servers.iter().zip(&runs_by_round) {
        let rps = median(runs.iter().map(|r| r.rps).collect());
        let p50 = median(runs.iter().map(|r| r.p50).collect());
        let p99 = median(runs.iter().map(|r| r.p99).collect());
        let cpu = median(runs.iter().map(|r| r.cpu_us).collect());
        let mut ratios: Vec<f64> = runs.iter().zip(&bare).map(|(r, b)| r.rps / b).collect();
        ratios.sort_by(f64::total_cmp);
        let ratio = match (ratios.first(), ratios.last()) {
            (Some(low), Some(high)) => {
                format!("{:.2} ({low:.2}–{high:.2})", median(ratios.clone()))
            }
            _ => "—".to_owned(),
        };
        println!("| {name} | {rps:.0} | {p50:.3} | {p99:.3} | {ratio} | {cpu:.1} |");
    }
    drop(runtime);
}
