//! The cache's revocation bookkeeping does not grow with the revocation rate: what
//! the heap holds after thousands of revocations is what it held before them.
//!
//! A counting allocator measures the live heap of this test binary (its own
//! process, so no other test's allocations count). The same revocations run on a
//! bare sled store first, as the baseline: sled's own allocations cancel out, and
//! what remains is the cache's. Remembering each revoked digest (as before 0.1)
//! kept 100-190 bytes per revocation; the bound is 40.

mod common;

use std::alloc::System;

use common::Users;
use scopegate::{CachingStore, NewToken, ScopeGate, SledStore};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

const REVOCATIONS: usize = 8_000;

#[global_allocator]
static HEAP: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live_heap_bytes() -> i64 {
    let stats = HEAP.stats();
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64 + stats.bytes_reallocated as i64
}

/// Live-heap growth over 8 000 revocations through a gate over `store`.
async fn growth_over_revocations(store: impl scopegate::TokenStore) -> i64 {
    let users = Users::default();
    let bob = users.add("bob", false);
    let gate = ScopeGate::builder(store, users).build().unwrap();
    let mut tokens = Vec::new();
    for _ in 0..REVOCATIONS {
        let token = gate
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        tokens.push(token.token.id);
    }
    let before = live_heap_bytes();
    for id in &tokens {
        gate.revoke_token(id).await.unwrap();
    }
    live_heap_bytes() - before
}

#[tokio::test(flavor = "current_thread")]
async fn revocations_through_the_cache_cost_no_more_heap_than_without_it() {
    let (bare_dir, cached_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bare = growth_over_revocations(SledStore::open(bare_dir.path()).unwrap()).await;
    let store = CachingStore::new(SledStore::open(cached_dir.path()).unwrap());
    let cached = growth_over_revocations(store).await;
    eprintln!("over 8 000 revocations the heap grew by {bare} B bare, {cached} B cached");
    let per_revocation = (cached - bare) / REVOCATIONS as i64;
    assert!(
        per_revocation < 40,
        "the cache kept {} bytes more than the bare store over 8 000 revocations",
        cached - bare
    );
}
