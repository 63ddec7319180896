//! What a request costs when two cores serve the same token at once: `oneshot`
//! requests through each router from one thread, then from two threads at the
//! same time (one per core), in-process, without sockets or a load generator.
//!
//! A count that every request writes (an `Arc` cloned from every worker, say)
//! costs nothing extra on one core; on two, its cache line moves between the
//! cores on every write. This bench shows that cost where the instruction count
//! cannot: the ratio to bare from two threads against the ratio from one.
//!
//! `cargo bench -p scopegate-benches --bench cores`. `CORES_REQUESTS` (default
//! 200000) per thread and round, `CORES_ROUNDS` (default 5); medians of rounds,
//! the cases run back to back in a rotating order. `CORES_CASES=guarded` runs
//! only those cases (and bare). `CORES_TOKENS=per_thread` gives the second
//! thread a token of its own (another user's): against the default, one token
//! for both, it shows what sharing the token's state between cores costs.

#![allow(missing_docs)]

mod common;

use std::{
    convert::Infallible,
    sync::{Arc, Barrier},
    time::Instant,
};

use axum::{body::Body, http::Request, response::Response};
use common::{
    chosen,
    hello::{hello_apps, hello_request},
    median, setting,
};
use scopegate::store::CacheConfig;
use tower::{util::BoxCloneSyncService, Service, ServiceExt};

type App = BoxCloneSyncService<Request<Body>, Response, Infallible>;

/// Nanoseconds per request, for `threads` threads sending `n` requests each,
/// thread `i` with `bearers[i % bearers.len()]`.
fn run(app: &App, bearers: &[&str], threads: usize, n: usize) -> f64 {
    let barrier = Arc::new(Barrier::new(threads));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let bearer = bearers[thread % bearers.len()];
            let (app, barrier) = (app.clone(), barrier.clone());
            scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                barrier.wait();
                runtime.block_on(async {
                    for _ in 0..n {
                        let request = hello_request(Some(bearer));
                        let response = app.clone().oneshot(request).await.unwrap();
                        assert_eq!(response.status(), 200);
                    }
                });
            });
        }
    });
    start.elapsed().as_nanos() as f64 / n as f64
}

fn boxed<S>(service: S) -> App
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(service)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (n, rounds) = (
        setting("CORES_REQUESTS", 200_000usize),
        setting("CORES_ROUNDS", 5usize),
    );
    let dir = common::scratch_dir();
    let runtime = common::runtime();
    let apps = runtime.block_on(hello_apps(dir.path(), CacheConfig::default()));
    let cases: Vec<_> = [
        ("bare", boxed(apps.bare)),
        ("floor_wrapped", boxed(apps.floor_wrapped)),
        ("handwritten", boxed(apps.handwritten)),
        ("guarded", boxed(apps.guarded)),
        ("guarded_wrapped", boxed(apps.guarded_wrapped)),
    ]
    .into_iter()
    .filter(|(name, _)| *name == "bare" || chosen("CORES_CASES", name))
    .collect();
    // One token for both threads (the case this bench is for), or with
    // `CORES_TOKENS=per_thread` one each: what sharing the token costs.
    let bearers = match std::env::var("CORES_TOKENS").as_deref() {
        Ok("per_thread") => vec![apps.token.as_str(), apps.other_token.as_str()],
        _ => vec![apps.token.as_str()],
    };
    println!("| case | 1 thread ns/req | × bare | 2 threads ns/req | × bare |");
    println!("|---|---|---|---|---|");
    let mut times = vec![[Vec::new(), Vec::new()]; cases.len()];
    for round in 0..rounds {
        for i in 0..cases.len() {
            let index = (i + round) % cases.len();
            for (slot, threads) in [1, 2].into_iter().enumerate() {
                run(&cases[index].1, &bearers, threads, n / 20); // warm
                times[index][slot].push(run(&cases[index].1, &bearers, threads, n));
            }
        }
    }
    let one_bare = median(times[0][0].clone());
    let two_bare = median(times[0][1].clone());
    for ((name, _), [one, two]) in cases.iter().zip(times) {
        let (one, two) = (median(one), median(two));
        println!(
            "| {name} | {one:.0} | {:.3} | {two:.0} | {:.3} |",
            one / one_bare,
            two / two_bare
        );
    }
}
