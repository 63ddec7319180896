//! Memory and disk at scale: a million stored tokens, a hundred thousand cached.
//!
//! - bytes on disk per stored token (the sled directory after a clean close);
//! - beside it, the bytes of the keys and values themselves, and the size of a
//!   fresh database that sled's own export and import fill with them;
//! - time to reopen the store, and the process's RSS after it;
//! - heap per cached token: a gate with the cache authenticates every cached
//!   token once, after a gate without a cache has done the same (so sled's page
//!   cache is warm); then the cached gate is dropped, and what that frees is what
//!   the token cache, its hot table and the digest memo kept. Beside it, the
//!   same count for a bare moka cache of as many entries, with and without a
//!   per-entry expiry: moka's own share.
//!
//! `cargo bench -p scopegate-benches --bench memory` (`MEMORY_TOKENS`, default
//! 1 000 000; `MEMORY_CACHED`, default 100 000). Needs about 2 GB of disk under
//! `target/`.

#![allow(missing_docs)]

mod common;

use std::{
    alloc::System,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{live_heap, rss_bytes, setting, Users};
use scopegate::{
    store::{CacheConfig, SledStore, TokenStore},
    NewToken, ScopeGate,
};
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

/// The bytes of every key and value in the database at `dir`, and the size of a
/// fresh database sled's own export and import fill with them: what the data
/// is, and what sled needs to hold it written in one go.
fn live_and_copied(dir: &Path) -> (u64, u64) {
    let copy = tempfile::tempdir_in(dir.parent().unwrap()).unwrap();
    let db = sled::open(dir).unwrap();
    let live = db
        .tree_names()
        .into_iter()
        .flat_map(|name| db.open_tree(name).unwrap().iter())
        .map(|kv| kv.map(|(k, v)| (k.len() + v.len()) as u64).unwrap())
        .sum();
    let fresh = sled::open(copy.path()).unwrap();
    fresh.import(db.export());
    fresh.flush().unwrap();
    drop(fresh);
    (live, dir_bytes(copy.path()))
}

fn gate(store: impl TokenStore, cached: Option<u64>) -> ScopeGate {
    let builder = match cached {
        Some(entries) => ScopeGate::builder(store, Users)
            .with_cache(CacheConfig::default().with_max_capacity(entries)),
        None => ScopeGate::builder(store, Users).without_cache(),
    };
    builder.without_last_use().build().unwrap()
}

/// Heap a bare moka cache of `entries` keeps: 32-byte keys, a shared pointer
/// each, and a per-entry expiry as the token cache has if `expiring`. The floor
/// for any cache that keeps its entries in moka.
async fn moka_alone(entries: usize, expiring: bool) -> i64 {
    struct Expiry;
    impl moka::Expiry<[u8; 32], Arc<()>> for Expiry {
        fn expire_after_create(&self, _: &[u8; 32], _: &Arc<()>, _: Instant) -> Option<Duration> {
            Some(Duration::from_secs(600))
        }
    }
    let before = live_heap(HEAP);
    let builder = moka::future::Cache::builder().max_capacity(entries as u64);
    let cache = match expiring {
        true => builder.expire_after(Expiry).build(),
        false => builder.build(),
    };
    let shared = Arc::new(());
    for i in 0..entries {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        cache.insert(key, shared.clone()).await;
    }
    cache.run_pending_tasks().await;
    assert_eq!(cache.entry_count(), entries as u64);
    live_heap(HEAP) - before
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

    let (cache_bytes, rss_end, moka_bytes) = runtime.block_on(async {
        let warm = gate(store.clone(), None);
        for secret in &secrets {
            warm.authenticate(secret).await.unwrap();
        }
        let hot = gate(store, Some(cached as u64));
        for secret in &secrets {
            hot.authenticate(secret).await.unwrap();
        }
        // Let moka settle its pending bookkeeping before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for secret in secrets.iter().take(1000) {
            hot.authenticate(secret).await.unwrap();
        }
        let rss = rss_bytes();
        // What the cache holds is what dropping its gate frees. sled's page cache,
        // shared with `warm`, stays, so its churn is not counted.
        let holding = live_heap(HEAP);
        drop(hot);
        let held = holding - live_heap(HEAP);
        let moka = (
            moka_alone(cached, true).await,
            moka_alone(cached, false).await,
        );
        (held, rss, moka)
    });
    // Last, so sled's copies do not count in the RSS figures above.
    let (live, copied) = live_and_copied(dir.path());
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
    println!(
        "| baseline: the keys and values sled holds | {} B per token |",
        live / total as u64
    );
    println!(
        "| baseline: sled's own export into a fresh database | {} B per token |",
        copied / total as u64
    );
    println!("| reopen the store | {:.2} s |", open_time.as_secs_f64());
    println!("| RSS after reopening | {:.0} MiB |", mib(rss_after_open));
    println!(
        "| heap per cached token (token cache, hot table, digest memo) | {} B |",
        cache_bytes / cached as i64
    );
    println!(
        "| baseline: a bare moka cache, 32-byte key and a pointer, per entry | {} B |",
        moka_bytes.0 / cached as i64
    );
    println!(
        "| the same without a per-entry expiry | {} B |",
        moka_bytes.1 / cached as i64
    );
    println!("| RSS at the end | {:.0} MiB |", mib(rss_end));
}
