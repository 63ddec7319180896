//! What every benchmark needs: a user loader that knows everyone, and scratch
//! directories on the build's disk (never a tmpfs, where syncs cost nothing).

pub(crate) mod hello;

use std::{alloc::System, path::Path, str::FromStr};

use scopegate::{AuthUser, BoxError, UserId, UserLoader};
use stats_alloc::StatsAlloc;

pub(crate) struct User;

impl AuthUser for User {
    fn is_admin(&self) -> bool {
        false
    }
}

/// Every user id is an active, non-admin user.
pub(crate) struct Users;

impl UserLoader for Users {
    type User = User;
    async fn load_user(&self, _: &UserId) -> Result<Option<User>, BoxError> {
        Ok(Some(User))
    }

    fn load_user_now(&self, _: &UserId) -> Option<Result<Option<User>, BoxError>> {
        Some(Ok(Some(User)))
    }
}

/// A temporary directory under `target/`.
#[allow(dead_code)]
pub(crate) fn scratch_dir() -> tempfile::TempDir {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target).unwrap();
    tempfile::tempdir_in(target).unwrap()
}

/// The runtime of a load harness: two workers, one per core of the CI machine.
#[allow(dead_code)]
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    runtime_with_workers(2)
}

/// A multi-threaded runtime with `workers` worker threads.
#[allow(dead_code)]
pub(crate) fn runtime_with_workers(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// A harness setting from the environment, or `default`.
#[allow(dead_code)]
pub(crate) fn setting<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether the comma-separated list in environment variable `variable` names
/// `name`; an unset or empty list names everything.
#[allow(dead_code)]
pub(crate) fn chosen(variable: &str, name: &str) -> bool {
    let list = std::env::var(variable).unwrap_or_default();
    list.is_empty() || list.split(',').any(|listed| listed == name)
}

/// The middle of `values` (the upper one of an even count).
#[allow(dead_code)]
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Bytes live on the heap, as counted by the bench's instrumented allocator.
#[allow(dead_code)]
pub(crate) fn live_heap(heap: &StatsAlloc<System>) -> i64 {
    let s = heap.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64 + s.bytes_reallocated as i64
}

/// The process's resident set, in bytes.
#[allow(dead_code)]
pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
