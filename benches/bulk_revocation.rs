//! What revoking a busy key costs on sled: one key exchanged for N tokens, then
//! deleted (or deactivated) while another task keeps writing, as logins and
//! exchanges of other users would.
//!
//! For each N, a fresh store under `target/` (a real disk: syncs cost what they
//! cost): the revoking call's time, and the other writer's latencies before
//! (its baseline, same run) and during the revocation.
//!
//! `cargo bench -p scopegate-benches --bench bulk_revocation`;
//! `BULK_TOKENS` (default `1000,10000,100000`) sets the token counts,
//! `BULK_OP` (`delete`, default, or `deactivate`) the revocation.

#![allow(missing_docs)]

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{runtime, scratch_dir, setting, Users};
use scopegate::{
    ApiKeyUpdate, CachingStore, NewApiKey, NewToken, ScopeGate, SledStore, TokenRequest,
};

fn main() {
    let counts: String = setting("BULK_TOKENS", "1000,10000,100000".to_owned());
    let op: String = setting("BULK_OP", "delete".to_owned());
    let rt = runtime();
    println!("| tokens of the key | `{op}` answers in | other writes before: p50 / p99 / max | during: p50 / p99 / max |");
    println!("|---|---|---|---|");
    for count in counts
        .split(',')
        .filter_map(|n| n.trim().parse::<usize>().ok())
    {
        let dir = scratch_dir();
        let row = rt.block_on(measure(dir.path(), count, &op));
        println!("{row}");
    }
}

async fn measure(place: &std::path::Path, count: usize, op: &str) -> String {
    let store = CachingStore::new(SledStore::open(place).unwrap());
    let gate = ScopeGate::builder(store, Users).build().unwrap();
    let owner = "busy".into();
    let key = gate
        .create_api_key(&owner, NewApiKey::new("ci"))
        .await
        .unwrap();
    let secret = Arc::new(key.secret.expose().to_owned());
    // The key's tokens, exchanged 256 at a time.
    let mut minted = 0;
    while minted < count {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..256.min(count - minted) {
            let (gate, secret) = (gate.clone(), secret.clone());
            batch.spawn(async move { gate.exchange_api_key(&secret, TokenRequest::new()).await });
        }
        while let Some(done) = batch.join_next().await {
            done.unwrap().unwrap();
            minted += 1;
        }
    }
    // Another user's logins, one after another, timed.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (gate, stop) = (gate.clone(), stop.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                gate.create_token(NewToken::for_user("bystander".into()))
                    .await
                    .unwrap();
                latencies.push((start, start.elapsed()));
            }
            latencies
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let began = Instant::now();
    match op {
        "deactivate" => {
            let update = ApiKeyUpdate {
                active: Some(false),
                ..ApiKeyUpdate::default()
            };
            gate.update_api_key(&key.key.id, update).await.unwrap();
        }
        _ => {
            gate.delete_api_key(&key.key.id).await.unwrap();
        }
    }
    let took = began.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let latencies = writer.await.unwrap();
    // A write overlaps the revocation if it started before the revocation ended
    // and ended after it began.
    let (before, during): (Vec<_>, Vec<_>) = latencies
        .into_iter()
        .filter(|(start, took_it)| *start < began || *start + *took_it > began)
        .partition(|(start, took_it)| *start + *took_it <= began);
    let during: Vec<Duration> = during
        .into_iter()
        .filter(|(start, _)| *start < began + took)
        .map(|(_, t)| t)
        .collect();
    let before: Vec<Duration> = before.into_iter().map(|(_, t)| t).collect();
    format!(
        "| {count} | {:.1} ms | {} | {} |",
        took.as_secs_f64() * 1e3,
        spread(before),
        spread(during)
    )
}

/// p50 / p99 / max of `latencies`, in milliseconds.
fn spread(mut latencies: Vec<Duration>) -> String {
    if latencies.is_empty() {
        return "none".to_owned();
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() - 1) as f64 * q).round() as usize;
        latencies[i].as_secs_f64() * 1e3
    };
    format!(
        "{:.1} / {:.1} / {:.1} ms ({} writes)",
        at(0.5),
        at(0.99),
        at(1.0),
        latencies.len()
    )
}
