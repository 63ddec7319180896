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
use chrono::{DateTime, Utc};
use common::{live_heap, rss_bytes, runtime, scratch_dir, Users};
use scopegate::{
    async_trait,
    secret::{SecretCodec, SecretDigest, SecretKind},
    store::{KeyChange, KeyDisposal, Purged},
    AnonymousSessions, ApiKey, ApiKeyId, AuthState, CacheConfig, CachingStore, NewToken, Page,
    Scope, ScopeGate, SledStore, StoreError, Token, TokenId, TokenStore, UserId,
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
    let state = AuthState::builder(SledStore::open(dir.path()).unwrap(), Users)
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

/// The bare store with a count of the token lookups that reach it.
struct Counting<S> {
    inner: S,
    lookups: Arc<AtomicUsize>,
}

#[async_trait]
impl<S: TokenStore> TokenStore for Counting<S> {
    async fn insert_token(&self, t: &Token) -> Result<(), StoreError> {
        self.inner.insert_token(t).await
    }
    async fn mint_token(&self, t: &Token, d: &SecretDigest, n: u64) -> Result<bool, StoreError> {
        self.inner.mint_token(t, d, n).await
    }
    async fn token_by_digest(&self, d: &SecretDigest) -> Result<Option<Token>, StoreError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        self.inner.token_by_digest(d).await
    }
    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.inner.token_by_id(id).await
    }
    async fn tokens_of_user(&self, u: &UserId, p: Page) -> Result<Vec<Token>, StoreError> {
        self.inner.tokens_of_user(u, p).await
    }
    async fn add_token_scopes(
        &self,
        id: &TokenId,
        s: &[Scope],
    ) -> Result<Option<Token>, StoreError> {
        self.inner.add_token_scopes(id, s).await
    }
    async fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.inner.delete_token(id).await
    }
    async fn touch_token(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.touch_token(id, at).await
    }
    async fn touch_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.touch_api_key(id, at).await
    }
    async fn insert_api_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        self.inner.insert_api_key(k).await
    }
    async fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.inner.api_key_by_id(id).await
    }
    async fn api_key_by_digest(&self, d: &SecretDigest) -> Result<Option<ApiKey>, StoreError> {
        self.inner.api_key_by_digest(d).await
    }
    async fn api_keys_of_user(&self, u: &UserId, p: Page) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.api_keys_of_user(u, p).await
    }
    async fn modify_api_key(
        &self,
        id: &ApiKeyId,
        c: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.inner.modify_api_key(id, c).await
    }
    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.inner.delete_api_key(id).await
    }
    async fn revoke_user(
        &self,
        u: &UserId,
        k: KeyDisposal,
    ) -> Result<Vec<SecretDigest>, StoreError> {
        self.inner.revoke_user(u, k).await
    }
    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        self.inner.purge_expired(now, limit).await
    }
}

async fn unknown_token_flood() {
    let dir = scratch_dir();
    let lookups = Arc::new(AtomicUsize::new(0));
    let counting = Counting {
        inner: SledStore::open(dir.path()).unwrap(),
        lookups: lookups.clone(),
    };
    // A cache sized for the app's 1 000 live tokens with room to spare.
    let config = CacheConfig::default().with_max_capacity(10_000);
    let gate = ScopeGate::builder(CachingStore::with_config(counting, config), Users)
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
async fn heap_over_revocations(store: impl TokenStore, n: usize) -> i64 {
    let gate = ScopeGate::builder(store, Users).build().unwrap();
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
    let bare = heap_over_revocations(SledStore::open(bare_dir.path()).unwrap(), n).await;
    let cached = CachingStore::new(SledStore::open(cached_dir.path()).unwrap());
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
