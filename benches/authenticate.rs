//! Speed of the request path and of the sweeper, each against a baseline measured
//! in the same run (the machine is shared and noisy: read ratios, not absolutes).
//!
//! - `authenticate/sled` vs `authenticate/cached`: one token resolved through the
//!   bare sled store (every request a cache miss) and through the moka cache in
//!   front of it; `authenticate/sled_raw_read` (and `_blocking`, through
//!   `spawn_blocking`) is one raw sled read of a token-sized record, the baseline
//!   of what a miss adds.
//! - `purge/live_0` vs `purge/live_N`: purging the same number of expired tokens
//!   with no other tokens stored (baseline) and with N live ones; equal times mean
//!   the sweeper's cost follows what expired, not what is stored.
//! - `http/no_layer` (baseline) vs the rest: one request through an axum
//!   `Router` without scopegate, then through `AuthLayer` with no token
//!   (`public`), with a cached token on a route that demands nothing (`layer`),
//!   plus a `RequireScope` guard (`guarded`, and `guarded_wrapped` with the layer
//!   wrapped around the router), and a bad-checksum token refused by the guard
//!   (`malformed`, 401).
//!
//! `cargo bench -p scopegate-benches --bench authenticate`

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

mod common;

use std::{
    convert::Infallible,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{Request, StatusCode},
    response::Response,
    routing::get,
    Router,
};
use chrono::{TimeDelta, Utc};
use common::Users;
use criterion::{
    criterion_group, criterion_main, measurement::WallTime, BenchmarkGroup, Criterion,
};
use scopegate::{
    clock::ManualClock,
    store::{SledStore, TokenStore},
    AuthState, NewToken, RequireScope, ScopeGate,
};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};

fn gate(store: impl TokenStore, clock: ManualClock, cached: bool) -> ScopeGate {
    let builder = ScopeGate::builder(store, Users).with_clock(clock);
    let builder = if cached {
        builder
    } else {
        builder.without_cache()
    };
    builder.build().unwrap()
}

fn authenticate(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut group = c.benchmark_group("authenticate");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let clock = ManualClock::new(Utc::now());
    let gates = [
        (
            "sled",
            gate(
                SledStore::open(dirs[0].path()).unwrap(),
                clock.clone(),
                false,
            ),
        ),
        (
            "cached",
            gate(
                SledStore::open(dirs[1].path()).unwrap(),
                clock.clone(),
                true,
            ),
        ),
    ];
    // Baselines: one read of a token-sized record straight from sled, on the
    // calling thread and through `spawn_blocking` (which the store uses).
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = sled::open(raw_dir.path()).unwrap();
    let (key, value) = ([b't'; 33], [7u8; 120]);
    raw.insert(key, &value[..]).unwrap();
    group.bench_function("sled_raw_read", |b| {
        b.to_async(&rt).iter(|| async {
            assert!(raw.get(key).unwrap().is_some());
        })
    });
    group.bench_function("sled_raw_read_blocking", |b| {
        b.to_async(&rt).iter(|| async {
            let raw = raw.clone();
            let read = tokio::task::spawn_blocking(move || raw.get(key).unwrap());
            assert!(read.await.unwrap().is_some());
        })
    });
    for (name, gate) in gates {
        let token = rt
            .block_on(gate.create_token(NewToken::for_user("bench".into())))
            .unwrap();
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                gate.authenticate(token.secret.expose()).await.unwrap();
            })
        });
    }
    group.finish();
}

const EXPIRED: usize = 20;

fn purge(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut group = c.benchmark_group("purge");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for live in [0usize, 5000] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Utc::now());
        let gate = gate(SledStore::open(dir.path()).unwrap(), clock.clone(), false);
        rt.block_on(async {
            for _ in 0..live {
                gate.create_token(
                    NewToken::for_user("live".into())
                        .lifetime(std::time::Duration::from_secs_f64(3000.0 * 86_400.0)),
                )
                .await
                .unwrap();
            }
        });
        group.bench_function(format!("live_{live}"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    rt.block_on(async {
                        for _ in 0..EXPIRED {
                            gate.create_token(
                                NewToken::for_user("gone".into())
                                    .lifetime(std::time::Duration::from_secs_f64(0.001 * 86_400.0)),
                            )
                            .await
                            .unwrap();
                        }
                        clock.advance(TimeDelta::minutes(2));
                        let start = Instant::now();
                        let purged = gate.purge_expired().await.unwrap();
                        spent += start.elapsed();
                        assert_eq!(purged.tokens.len(), EXPIRED);
                    });
                }
                spent
            })
        });
    }
    group.finish();
}

scopegate::scopes! {
    struct DataRead = "core.data.read";
}

fn http(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let mut group = c.benchmark_group("http");
    let dir = tempfile::tempdir().unwrap();
    let state = AuthState::builder(
        ScopeGate::builder(SledStore::open(dir.path()).unwrap(), Users)
            .with_registry(scopegate::ScopeRegistry::of::<DataRead>().unwrap()),
    )
    .build()
    .unwrap();
    let token = rt
        .block_on(
            state
                .gate()
                .create_token(NewToken::for_user("bench".into())),
        )
        .unwrap();
    let bearer = format!("Bearer {}", token.secret.expose());
    // The same token with its last check digit changed: a bad checksum.
    let mut forged = bearer.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    let routes = || {
        Router::new()
            .route("/public", get(|| async { "data" }))
            .route("/data", get(|_: RequireScope<DataRead>| async { "data" }))
    };
    let bare: Router = Router::new().route("/data", get(|| async { "data" }));
    let layered: Router = routes().layer(state.layer());
    let wrapped = state.layer().layer(routes());
    let ok = StatusCode::OK;
    let bearer = Some(bearer.as_str());
    request_case(&mut group, &rt, "no_layer", &bare, "/data", None, ok);
    request_case(&mut group, &rt, "public", &layered, "/public", None, ok);
    request_case(&mut group, &rt, "layer", &layered, "/public", bearer, ok);
    request_case(&mut group, &rt, "guarded", &layered, "/data", bearer, ok);
    request_case(
        &mut group,
        &rt,
        "guarded_wrapped",
        &wrapped,
        "/data",
        bearer,
        ok,
    );
    let refused = StatusCode::UNAUTHORIZED;
    let forged = Some(forged.as_str());
    request_case(
        &mut group,
        &rt,
        "malformed",
        &layered,
        "/data",
        forged,
        refused,
    );
    group.finish();
}

/// One `oneshot` request to `path` through `service`, answered with `status`.
fn request_case<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    service: &S,
    path: &str,
    bearer: Option<&str>,
    status: StatusCode,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| async {
            let mut request = Request::builder().uri(path);
            if let Some(bearer) = bearer {
                request = request.header("authorization", bearer);
            }
            let request = request.body(Body::empty()).unwrap();
            let response = service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), status);
        })
    });
}

criterion_group!(benches, authenticate, purge, http);
criterion_main!(benches);
