//! A revocation holds however its request ends: each revoking operation's caller
//! is dropped at every store call's park points in turn, on sled with and
//! without the cache (PostgreSQL's run in `postgres_store.rs`).

mod common;

cancellation_tests!(crate::common::cancellation::SledReal);
