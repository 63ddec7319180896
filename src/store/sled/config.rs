//! [`SledConfig`]: how a [`SledStore`](super::SledStore) opens its database.

/// sled's page cache unless configured: 64 MiB. sled's own default, 1 GiB, is
/// more than an auth store should claim; the [`CachingStore`](crate::CachingStore)
/// in front serves the hot records, so sled's cache only serves misses.
pub const DEFAULT_SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Settings of a [`SledStore`](super::SledStore).
///
/// ```
/// # fn main() -> Result<(), scopegate::StoreError> {
/// use scopegate::{SledConfig, SledStore};
/// let dir = tempfile::tempdir().unwrap();
/// let store = SledStore::open_with(dir.path(), SledConfig::default().with_cache_bytes(16 << 20))?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledConfig {
    cache_bytes: u64,
}

impl Default for SledConfig {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_SLED_CACHE_BYTES,
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
}
