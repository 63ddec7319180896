//! Floods stay bounded: what unauthenticated or hostile traffic costs in disk and
//! memory. Each figure is measured against a baseline in the same run.
//!
//! - 50 000 `GET /token/session` without a token (32 at a time): how many were
//!   answered with a token, and the growth of the data directory, the process's
//!   RSS and its live heap.
//! - 1 000 live tokens in a cache of 10 000 entries, then 100 000 made-up ones
//!   with a live lookup after every 100: the share of live lookups answered from
//!   the cache.
//! - 50 000 revocations through the cache against the same on the bare store: the
//!   live heap the cache keeps per revocation.
//!
//! `cargo bench -p scopegate-benches --bench floods`

// A load harness, not a library: its items need no docs.
#![allow(missing_docs)]

mod common;

use std::{
    alloc::System,
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use axum::{body::Body, http::Request, Router};
use common::{live_heap, rss_bytes, runtime, scratch_dir, Users};
use scopegate::{
    secret::{SecretCodec, SecretKind},
    store::{CacheConfig, Intercepted, Interceptor, SledStore, StoreCall, StoreError},
    AnonymousSessions, AuthState, NewToken, ScopeGate, ScopeGateBuilder, UserId,
};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::ServiceExt;

#[global_allocator]
static HEAP: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes the files under `dir` occupy on disk.
fn disk_usage(dir: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            disk_usage(&entry.path())
        } else {
            meta.blocks() as i64 * 512
        };
    }
    total
}

fn mb(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

async fn anonymous_flood() {
    let dir = scratch_dir();
    let state = AuthState::builder(ScopeGate::builder(
        SledStore::open(dir.path()).unwrap(),
        Users,
    ))
    .with_anonymous_sessions(AnonymousSessions::default())
    .build()
    .unwrap();
    let app: Router = scopegate::router().layer(state.layer()).with_state(state);
    let (disk0, rss0, heap0) = (disk_usage(dir.path()), rss_bytes() as i64, live_heap(HEAP));
    let issued = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (app, issued) = (app.clone(), issued.clone());
        tasks.spawn(async move {
            for _ in 0..50_000 / 32 {
                let request = Request::get("/token/session").body(Body::empty()).unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                if response.status() == 200 {
                    issued.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    println!(
        "| 50 000 anonymous GET /token/session | {} tokens issued; disk +{}, RSS +{}, live heap +{} |",
        issued.load(Ordering::Relaxed),
        mb(disk_usage(dir.path()) - disk0),
        mb(rss_bytes() as i64 - rss0),
        mb(live_heap(HEAP) - heap0),
    );
}

/// Counts the token lookups that reach the store.
struct Lookups(Arc<AtomicUsize>);

impl Interceptor for Lookups {
    async fn around<T: Send + 'static>(
        &self,
        call: StoreCall,
        inner: impl std::future::Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        if call == StoreCall::TokenByDigest {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        inner.await
    }
}

async fn unknown_token_flood() {
    let dir = scratch_dir();
    let lookups = Arc::new(AtomicUsize::new(0));
    let counting = Intercepted::new(
        SledStore::open(dir.path()).unwrap(),
        Lookups(lookups.clone()),
    );
    // A cache sized for the app's 1 000 live tokens with room to spare.
    let config = CacheConfig::default().with_max_capacity(10_000);
    let gate = ScopeGate::builder(counting, Users)
        .with_cache(config)
        .build()
        .unwrap();
    let user = UserId::from("bench");
    let mut live = Vec::new();
    for _ in 0..1_000 {
        let token = gate
            .create_token(NewToken::for_user(user.clone()))
            .await
            .unwrap();
        gate.authenticate(token.secret.expose()).await.unwrap();
        live.push(token.secret);
    }
    let codec = SecretCodec::default();
    let (mut live_lookups, mut live_misses) = (0, 0);
    for round in 0..100_000 {
        let (bogus, _) = codec.generate(SecretKind::Token);
        assert!(gate.authenticate(bogus.expose()).await.is_err());
        if round % 100 == 99 {
            let before = lookups.load(Ordering::Relaxed);
            gate.authenticate(live[live_lookups % live.len()].expose())
                .await
                .unwrap();
            live_misses += lookups.load(Ordering::Relaxed) - before;
            live_lookups += 1;
        }
    }
    println!(
        "| 100 000 made-up tokens, a live lookup every 100 | live hit rate {:.1}% ({live_misses} of {live_lookups} live lookups reached the store) |",
        100.0 * (live_lookups - live_misses) as f64 / live_lookups as f64
    );
}

/// Live-heap growth over `n` revocations (32 at a time) through a gate over `store`.
async fn heap_over_revocations(gate: ScopeGateBuilder, n: usize) -> i64 {
    let gate = gate.build().unwrap();
    let user = UserId::from("bench");
    let mut ids = Vec::new();
    for _ in 0..n {
        let token = gate
            .create_token(NewToken::for_user(user.clone()))
            .await
            .unwrap();
        ids.push(token.token.id);
    }
    let before = live_heap(HEAP);
    let ids = Arc::new(ids);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let (gate, ids) = (gate.clone(), ids.clone());
        tasks.spawn(async move {
            for id in ids.iter().skip(worker).step_by(32) {
                gate.revoke_token(id).await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    live_heap(HEAP) - before
}

async fn revocation_memory() {
    let n = 50_000;
    let (bare_dir, cached_dir) = (scratch_dir(), scratch_dir());
    let bare = ScopeGate::builder(SledStore::open(bare_dir.path()).unwrap(), Users);
    let bare = heap_over_revocations(bare.without_cache(), n).await;
    let cached = ScopeGate::builder(SledStore::open(cached_dir.path()).unwrap(), Users);
    let cached = heap_over_revocations(cached, n).await;
    println!(
        "| 50 000 revocations, cached vs bare store | the cache kept {} ({} B per revocation) |",
        mb(cached - bare),
        (cached - bare) / n as i64
    );
}

fn main() {
    let rt = runtime();
    println!("| flood | cost |");
    println!("|---|---|");
    rt.block_on(anonymous_flood());
    rt.block_on(unknown_token_flood());
    rt.block_on(revocation_memory());
}
