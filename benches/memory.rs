//! Memory and disk at scale: a million stored tokens, a hundred thousand cached.
//!
//! - bytes on disk per stored token (the sled directory after a clean close);
//! - time to reopen the store, and the process's RSS after it;
//! - heap per cached token: a gate with the cache authenticates every cached
//!   token once, after a gate without a cache has done the same (so sled's page
//!   cache is already warm and counted in neither); the difference is what the
//!   token cache and the digest memo keep.
//!
//! `cargo bench -p scopegate-benches --bench memory` (`MEMORY_TOKENS`, default
//! 1 000 000; `MEMORY_CACHED`, default 100 000). Needs about 2 GB of disk under
//! `target/`.

#![allow(missing_docs)]

mod common;

use std::{
    alloc::System,
    path::Path,
    time::{Duration, Instant},
};

use common::{live_heap, rss_bytes, setting, Users};
use scopegate::{CacheConfig, CachingStore, NewToken, ScopeGate, SledStore, TokenStore};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static HEAP: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn gate(store: impl TokenStore, cached: Option<u64>) -> ScopeGate {
    let builder = match cached {
        Some(entries) => ScopeGate::builder(
            CachingStore::with_config(store, CacheConfig::default().with_max_capacity(entries)),
            Users,
        ),
        None => ScopeGate::builder(store, Users),
    };
    builder.without_last_use().build().unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (total, cached) = (
        setting("MEMORY_TOKENS", 1_000_000usize),
        setting("MEMORY_CACHED", 100_000usize),
    );
    let runtime = common::runtime();
    let dir = common::scratch_dir();
    const WRITERS: usize = 64;

    let started = Instant::now();
    let secrets: Vec<String> = runtime.block_on(async {
        let writer = gate(SledStore::open(dir.path()).unwrap(), None);
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let writer = writer.clone();
            tasks.spawn(async move {
                let mut kept = Vec::new();
                for i in (w..total).step_by(WRITERS) {
                    let issued = writer
                        .create_token(NewToken::for_user(format!("user{}", i % 10_000).into()))
                        .await
                        .unwrap();
                    if i < cached {
                        kept.push(issued.secret.expose().to_owned());
                    }
                }
                kept
            });
        }
        let mut secrets = Vec::new();
        while let Some(kept) = tasks.join_next().await {
            secrets.extend(kept.unwrap());
        }
        secrets
    });
    let insert_time = started.elapsed();
    let disk = dir_bytes(dir.path());

    let opened = Instant::now();
    let store = SledStore::open(dir.path()).unwrap();
    let open_time = opened.elapsed();
    let rss_after_open = rss_bytes();

    let (cache_bytes, rss_end) = runtime.block_on(async {
        let warm = gate(store.clone(), None);
        for secret in &secrets {
            warm.authenticate(secret).await.unwrap();
        }
        let before = live_heap(HEAP);
        let hot = gate(store, Some(cached as u64));
        for secret in &secrets {
            hot.authenticate(secret).await.unwrap();
        }
        // Let moka settle its pending bookkeeping before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for secret in secrets.iter().take(1000) {
            hot.authenticate(secret).await.unwrap();
        }
        (live_heap(HEAP) - before, rss_bytes())
    });

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("\n{total} tokens stored, {cached} cached\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| insert ({WRITERS} concurrent writers, durable) | {:.1} s, {:.0} tokens/s |",
        insert_time.as_secs_f64(),
        total as f64 / insert_time.as_secs_f64()
    );
    println!(
        "| on disk | {:.0} MiB, {} B per token |",
        mib(disk),
        disk / total as u64
    );
    println!("| reopen the store | {:.2} s |", open_time.as_secs_f64());
    println!("| RSS after reopening | {:.0} MiB |", mib(rss_after_open));
    println!(
        "| heap per cached token (token cache + digest memo) | {} B |",
        cache_bytes / cached as i64
    );
    println!("| RSS at the end | {:.0} MiB |", mib(rss_end));
}
