//! [`SledConfig`]: how a [`SledStore`](super::SledStore) opens its database.

/// sled's page cache unless configured: 64 MiB. sled's own default, 1 GiB, is
/// more than an auth store should claim; the gate's cache
/// in front serves the hot records, so sled's cache only serves misses.
pub const DEFAULT_SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Settings of a [`SledStore`](super::SledStore).
///
/// ```
/// # fn main() -> Result<(), scopegate::store::StoreError> {
/// use scopegate::store::{SledConfig, SledStore};
/// let dir = tempfile::tempdir().unwrap();
/// let store = SledStore::open_with(dir.path(), SledConfig::default().with_cache_bytes(16 << 20))?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledConfig {
    cache_bytes: u64,
    blocking_reads: bool,
}

impl Default for SledConfig {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_SLED_CACHE_BYTES,
            blocking_reads: false,
        }
    }
}

impl SledConfig {
    /// The most memory sled's page cache may use (default
    /// [`DEFAULT_SLED_CACHE_BYTES`]).
    #[must_use]
    pub fn with_cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// The page cache's size.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// Runs the lookups of the request path (a token or key by its secret's
    /// digest) on Tokio's blocking threads, as every other call runs.
    ///
    /// By default they run on the calling task: sled answers them from memory,
    /// and the hop to a blocking thread costs many times the read itself
    /// (`BENCHMARKS.md`, "What a cache miss costs"). Turn this on if the database lives on a disk slow
    /// enough that a read missing sled's page cache would stall the runtime.
    #[must_use]
    pub fn with_reads_on_blocking_threads(mut self) -> Self {
        self.blocking_reads = true;
        self
    }

    /// Whether request-path lookups run on blocking threads.
    pub fn reads_on_blocking_threads(&self) -> bool {
        self.blocking_reads
    }
}
