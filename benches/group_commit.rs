//! Durable writes and group commit: key → token exchanges per second, each on
//! stable storage before it returns, with 1 writer and with 32 concurrent writers,
//! against a baseline measured in the same run on the same disk: raw sled batches of
//! the same shape, 32 at a time, then one flush + `fdatasync` per group.
//!
//! `cargo bench -p scopegate-benches --bench group_commit` (the temporary directories live under
//! `target/`, on the same disk as the build, never on a tmpfs where syncs are free).
//! Targets: 32 writers ≥ 5× one writer, and ≥ 0.8× the raw baseline.
//!
//! `cargo bench -p scopegate-benches --bench group_commit -- only-32` runs one series alone (`only-1`,
//! `only-32`), to count its syncs: `strace -f -c -e trace=fdatasync <the bench
//! binary> only-32`.

// A load harness, not a library: its items need no docs.
#![allow(missing_docs)]

mod common;

use std::{
    fs::File,
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use common::{median, runtime, scratch_dir, Users};
use scopegate::{store::SledStore, NewApiKey, ScopeGate, TokenRequest, UserId};

const WRITERS: usize = 32;
const ROUNDS: usize = 3;

/// Durable exchanges per second with `writers` concurrent writers.
fn exchanges_per_second(rt: &tokio::runtime::Runtime, writers: usize, total: usize) -> f64 {
    let dir = scratch_dir();
    rt.block_on(async {
        let gate = ScopeGate::builder(SledStore::open(dir.path()).unwrap(), Users)
            .without_cache()
            .build()
            .unwrap();
        let owner = UserId::from("bench");
        let key = gate
            .create_api_key(&owner, NewApiKey::new("bench"))
            .await
            .unwrap();
        let secret = Arc::new(key.secret);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..writers {
            let (gate, secret) = (gate.clone(), secret.clone());
            tasks.spawn(async move {
                for _ in 0..total / writers {
                    gate.exchange_api_key(secret.expose(), TokenRequest::default())
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        (total / writers * writers) as f64 / started.elapsed().as_secs_f64()
    })
}

/// The baseline: raw sled batches shaped like a mint (a token record, four index
/// entries, the key's record), 32 threads at a time, one flush + fdatasync per group.
fn raw_sled_per_second(groups: usize) -> f64 {
    let dir = scratch_dir();
    let db = sled::open(dir.path()).unwrap();
    let tree = db.open_tree("raw").unwrap();
    let log = File::open(dir.path().join("db")).unwrap();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let (tree, log, barrier) = (&tree, &log, barrier.clone());
            scope.spawn(move || {
                for group in 0..groups {
                    let id = format!("{writer:04}-{group:08}");
                    let mut batch = sled::Batch::default();
                    batch.insert(format!("t{id}").as_bytes(), vec![0x5a; 420]);
                    batch.insert(format!("i{id}").as_bytes(), vec![1; 32]);
                    batch.insert(format!("u{id}").as_bytes(), vec![2; 32]);
                    batch.insert(format!("g{id}").as_bytes(), vec![3; 32]);
                    batch.insert(format!("x{id}").as_bytes(), vec![4; 32]);
                    batch.insert(b"key".as_slice(), vec![0x6b; 380]);
                    tree.apply_batch(batch).unwrap();
                    if barrier.wait().is_leader() {
                        tree.flush().unwrap();
                        log.sync_data().unwrap();
                    }
                    barrier.wait();
                }
            });
        }
    });
    (groups * WRITERS) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rt = runtime();
    // `cargo bench` also passes `--bench`.
    let only = std::env::args().find_map(|arg| arg.strip_prefix("only-")?.parse().ok());
    if let Some(writers) = only {
        let rate = exchanges_per_second(&rt, writers, 3_200);
        println!("3 200 exchanges from {writers} writers: {rate:.0}/s");
        return;
    }
    let (mut one, mut many, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved rounds, so drift in the machine's load hits every series alike.
    for round in 1..=ROUNDS {
        one.push(exchanges_per_second(&rt, 1, 300));
        many.push(exchanges_per_second(&rt, WRITERS, 3_200));
        raw.push(raw_sled_per_second(100));
        eprintln!(
            "round {round}: 1 writer {:.0}/s, {WRITERS} writers {:.0}/s, raw sled {:.0}/s",
            one[round - 1],
            many[round - 1],
            raw[round - 1]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (one, many, raw) = (median(one), median(many), median(raw));
    println!("durable writes per second (median of {ROUNDS} interleaved rounds)");
    println!("| series | writes/s | ratio |");
    println!("|---|---|---|");
    println!("| scopegate exchange, 1 writer | {one:.0} | 1.00× |");
    println!(
        "| scopegate exchange, {WRITERS} writers | {many:.0} | {:.2}× one writer, {:.2}× raw |",
        many / one,
        many / raw
    );
    println!("| raw sled batch, {WRITERS} per sync (baseline) | {raw:.0} | 1.00× |");
}
