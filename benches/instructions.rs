//! Instruction counts per request, for callgrind: one case's requests run inside
//! `measured`, which `.ci`-free runs count with `--toggle-collect`:
//!
//! ```text
//! cargo bench -p scopegate-benches --bench instructions --no-run
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/deps/instructions-<hash> <case> 1000
//! ```
//!
//! Cases: `bare` (no auth: the baseline), `floor` (a layer that only inserts one
//! constant extension: what any identity middleware costs in axum), `handwritten`
//! (SHA-256 of the bearer, a moka hit), `layer` (scopegate's layer, cached live
//! token, handler demanding nothing), `guarded` (plus `RequireScope`), `malformed`
//! (a token with a bad checksum), `miss` (a live token the cache does not hold:
//! a store read each time), `many` (the wrapped guarded route, each request
//! with the next of 256 cached tokens), and `refusal` and `refusal_short`: no HTTP, only the
//! gate refusing the malformed token or one a character short
//! (`ScopeGate::authenticate`, polled once), what the layer does with one before
//! the route answers. `BENCHMARKS.md` has the figures and the script that
//! runs them all (`benches/instructions.sh`).

#![allow(missing_docs)]

mod common;

use std::{
    convert::Infallible,
    future::Future,
    task::{Context, Poll, Waker},
};

use axum::{body::Body, http::Request, response::Response};
use common::hello::{hello_apps, hello_request};
use scopegate::store::CacheConfig;
use tower::{Service, ServiceExt};

/// Sends `n` requests; the only function callgrind counts.
#[inline(never)]
async fn measured<S>(router: &S, bearer: Option<&str>, n: usize, expect: u16)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    for _ in 0..n {
        let response = router.clone().oneshot(hello_request(bearer)).await.unwrap();
        assert_eq!(response.status().as_u16(), expect);
    }
}

/// Sends `n` requests, each with the next of `bearers` in turn; callgrind
/// counts this too.
#[inline(never)]
async fn measured_in_turn<S>(router: &S, bearers: &[String], n: usize)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    for bearer in bearers.iter().cycle().take(n) {
        let request = hello_request(Some(bearer));
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
}

/// Refuses `secret` `n` times through the gate alone; callgrind counts this too.
#[inline(never)]
fn measured_refusals(gate: &scopegate::ScopeGate, secret: &str, n: usize) {
    let mut context = Context::from_waker(Waker::noop());
    for _ in 0..n {
        let refusal = std::pin::pin!(gate.authenticate(secret));
        match refusal.poll(&mut context) {
            Poll::Ready(Err(scopegate::Error::InvalidToken(_))) => {}
            other => panic!(
                "expected a refusal at once, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
    }
}

/// Warms caches and lazy statics outside the count, then sends the `n` counted.
async fn run<S>(router: &S, bearer: Option<&str>, n: usize, expect: u16)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    measured(router, bearer, 10, expect).await;
    measured(router, bearer, n, expect).await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--bench") && args.len() <= 2 {
        return; // `cargo bench` runs every bench target: this one only under valgrind.
    }
    let case = args.get(1).map(String::as_str).unwrap_or("guarded");
    let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = common::scratch_dir();
    runtime.block_on(async {
        // The miss case caches nothing: every request reads sled.
        let cache = match case {
            "miss" => CacheConfig::default().with_max_capacity(0),
            _ => CacheConfig::default(),
        };
        let apps = hello_apps(dir.path(), cache).await;
        let live = apps.token.clone();
        let mut malformed = live.clone();
        malformed.pop();
        malformed.push(if live.ends_with('A') { 'B' } else { 'A' });
        let (live, malformed) = (Some(live.as_str()), Some(malformed.as_str()));
        match case {
            "bare" => run(&apps.bare, live, n, 200).await,
            "floor" => run(&apps.floor, live, n, 200).await,
            "floor_wrapped" => run(&apps.floor_wrapped, live, n, 200).await,
            "handwritten" => run(&apps.handwritten, live, n, 200).await,
            "layer" => run(&apps.layer, live, n, 200).await,
            "guarded" | "miss" => run(&apps.guarded, live, n, 200).await,
            "guarded_wrapped" => run(&apps.guarded_wrapped, live, n, 200).await,
            "malformed" => run(&apps.guarded, malformed, n, 401).await,
            "many" => {
                // Each request another cached token, none repeating within
                // 256 requests: a server of many clients.
                let mut bearers = Vec::new();
                for i in 0..256 {
                    let issued = apps
                        .state
                        .gate()
                        .create_token(scopegate::NewToken::for_user(format!("user-{i}").into()))
                        .await
                        .unwrap();
                    bearers.push(issued.secret.expose().to_owned());
                }
                // Twice round, so every token is cached and seen before the count.
                measured_in_turn(&apps.guarded_wrapped, &bearers, 512).await;
                measured_in_turn(&apps.guarded_wrapped, &bearers, n).await;
            }
            "refusal" | "refusal_short" => {
                let secret = match case {
                    "refusal" => malformed.unwrap(),
                    _ => &live.unwrap()[1..],
                };
                let gate = apps.state.gate();
                measured_refusals(gate, secret, 10);
                measured_refusals(gate, secret, n);
            }
            other => panic!("unknown case {other}"),
        }
    });
}
