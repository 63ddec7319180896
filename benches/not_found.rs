//! Whether a 404 tells an id that exists from one that does not: `DELETE
//! /api_key/{id}` and `DELETE /token/{id}` by a user, for another user's record
//! and for a made-up id, both answered 404.
//!
//! Times on a shared machine drift by more than the effect looked for, so the
//! two ids are timed interleaved: each round sends one request for each, in an
//! order that alternates, and the table shows each id's median and quartiles
//! and the median of the per-round differences (theirs − made-up). The last
//! row times two made-up ids the same way: its difference is what noise alone
//! gives.
//!
//! `cargo bench -p scopegate-benches --bench not_found` (`NOT_FOUND_ROUNDS`,
//! default 20 000).

#![allow(missing_docs)]

mod common;

use std::time::{Duration, Instant};

use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use common::{setting, Users};
use scopegate::{store::SledStore, AuthState, NewApiKey, NewToken, ScopeGate};
use tower::ServiceExt;

fn main() {
    let rounds: usize = setting("NOT_FOUND_ROUNDS", 20_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = common::scratch_dir();
    let state = AuthState::builder(ScopeGate::builder(
        SledStore::open(dir.path()).unwrap(),
        Users,
    ))
    .build()
    .unwrap();
    let gate = state.gate();
    let (theirs_key, theirs_token, caller) = rt.block_on(async {
        let owner = "owner".into();
        let key = gate
            .create_api_key(&owner, NewApiKey::new("k"))
            .await
            .unwrap();
        let token = gate.create_token(NewToken::for_user(owner)).await.unwrap();
        let caller = gate
            .create_token(NewToken::for_user("caller".into()))
            .await
            .unwrap();
        (key.key.id, token.token.id, caller.secret)
    });
    let app: Router = scopegate::router()
        .layer(state.layer())
        .with_state(state.clone());
    let bearer = format!("Bearer {}", caller.expose());
    let made_up = "A".repeat(22);
    println!(
        "| route | theirs: median (p25–p75) | made-up: median (p25–p75) | median of differences |"
    );
    println!("|---|---|---|---|");
    for (route, theirs, unknown) in [
        (
            "DELETE /api_key/{id}",
            format!("/api_key/{theirs_key}"),
            format!("/api_key/{made_up}"),
        ),
        (
            "DELETE /token/{id}",
            format!("/token/{theirs_token}"),
            format!("/token/{made_up}"),
        ),
        // The control: two made-up ids, where any difference is noise.
        (
            "DELETE /token/{id}, both made up",
            format!("/token/{}", "B".repeat(22)),
            format!("/token/{made_up}"),
        ),
    ] {
        let time = |path: &str| {
            let request = Request::delete(path)
                .header("authorization", &bearer)
                .body(Body::empty())
                .unwrap();
            let start = Instant::now();
            let response = rt.block_on(app.clone().oneshot(request)).unwrap();
            let took = start.elapsed();
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
            took
        };
        for _ in 0..1_000 {
            time(&theirs);
            time(&unknown);
        }
        let (mut a, mut b, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (x, y) = if round % 2 == 0 {
                let x = time(&theirs);
                (x, time(&unknown))
            } else {
                let y = time(&unknown);
                (time(&theirs), y)
            };
            diffs.push(x.as_nanos() as i128 - y.as_nanos() as i128);
            a.push(x);
            b.push(y);
        }
        diffs.sort_unstable();
        println!(
            "| `{route}` | {} | {} | {:.2} µs |",
            quartiles(&mut a),
            quartiles(&mut b),
            diffs[diffs.len() / 2] as f64 / 1000.0
        );
    }
}

fn quartiles(times: &mut [Duration]) -> String {
    times.sort_unstable();
    let at = |q: usize| times[times.len() * q / 4].as_secs_f64() * 1e6;
    format!("{:.2} µs ({:.2}–{:.2})", at(2), at(1), at(3))
}
