//! The cache's revocation bookkeeping does not grow with the revocation rate.
//!
//! The gate runs on this test's thread (a current-thread runtime) and sled on
//! tokio's blocking pool, so counting the bytes this thread holds on to measures
//! the gate and the cache, not sled. The same revocations on the bare store are the
//! baseline: what the cache adds is the difference. Remembering each revoked digest
//! (as before 0.1) kept 137-179 bytes per revocation here; the bound is 64, and
//! the cache as it is keeps none beyond noise of about 30.

mod common;

use std::alloc::System;

use alloc_metrics::{thread_metrics, MetricAlloc};
use common::Users;
use scopegate::{store::SledStore, NewToken, ScopeGate, ScopeGateBuilder, UserId};

#[global_allocator]
static HEAP: MetricAlloc<System> = MetricAlloc::new(System);

const REVOCATIONS: usize = 5_000;

/// Bytes this thread still holds after `REVOCATIONS` revocations through a gate
/// over `store`, beyond what it held before them.
async fn kept_over_revocations(gate: ScopeGateBuilder) -> isize {
    let gate = gate.build().unwrap();
    let bob = UserId::from("bob");
    let mut tokens = Vec::with_capacity(REVOCATIONS);
    for _ in 0..REVOCATIONS {
        let token = gate
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        tokens.push(token.token.id);
    }
    let before = thread_metrics();
    for id in &tokens {
        gate.revoke_token(id).await.unwrap();
    }
    (thread_metrics() - before).allocated_bytes
}

#[tokio::test(flavor = "current_thread")]
async fn revocations_through_the_cache_keep_no_memory_per_revocation() {
    let (bare_dir, cached_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let users = Users::default();
    users.add("bob", false);
    let bare = SledStore::open(bare_dir.path()).unwrap();
    let bare = kept_over_revocations(ScopeGate::builder(bare, users.clone()).without_cache()).await;
    let cached = SledStore::open(cached_dir.path()).unwrap();
    let cached = kept_over_revocations(ScopeGate::builder(cached, users)).await;
    let per_revocation = (cached - bare) / REVOCATIONS as isize;
    eprintln!("over {REVOCATIONS} revocations: bare {bare} B, cached {cached} B kept");
    assert!(
        per_revocation < 64,
        "the cache kept {} bytes ({per_revocation} per revocation) more than the bare store",
        cached - bare
    );
}
