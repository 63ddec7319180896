//! [`PgStore`]: the PostgreSQL backend, for several replicas sharing one database.

mod breaker;
mod config;
mod errors;
mod feed;
mod health;
mod records;
mod revocations;
mod rows;
mod schema;

use std::{fmt, future::Future, sync::Arc};

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    Connection, PgConnection, PgPool,
};

use self::{
    breaker::{Breaker, CircuitOpen},
    errors::{db, TimedOut},
    feed::FeedKey,
    health::Health,
};
pub use self::{config::PgConfig, feed::PgInvalidationFeed};
use super::{StoreError, StoreErrorKind};

/// How long a pooled connection may sit idle before it is checked again on its
/// way out of the pool.
const CHECK_IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Tokens and API keys in PostgreSQL, shared by every replica of an app.
///
/// - Every call is one transaction: a record changes with its indexes or not at
///   all, and minting a token re-checks its key under the key's row lock, so a
///   concurrent deactivation, deletion or rotation never leaves a stray token.
/// - Commits are durable when they return (PostgreSQL's `synchronous_commit`).
/// - Each revoking write publishes what it revoked (a token's digest, or the tag
///   of a key or user whose tokens all went) with `NOTIFY`, in the same
///   transaction. The gate's cache in front (unless built
///   [`without_cache`](crate::ScopeGateBuilder::without_cache)) subscribes to those
///   notifications, so a revocation on one replica is refused by every other
///   within milliseconds; while the subscription is down, the cache is bypassed.
///
/// - Every call has a time limit ([`PgConfig::with_timeout`]): a database that is
///   down, an exhausted pool or a lock wait ends in [`StoreErrorKind::Unavailable`]
///   (503), never in a hung request, and the store serves again when the database
///   is back, without a restart.
///
/// The tables live in their own schema (`scopegate` by default), created and
/// upgraded on start by numbered migrations.
///
/// ```no_run
/// # async fn run() -> Result<(), scopegate::store::StoreError> {
/// use scopegate::store::PgStore;
/// let store = PgStore::connect("postgres://app@localhost/app").await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    config: Arc<PgConfig>,
    channel: Arc<str>,
    health: Arc<Health>,
    breaker: Arc<Breaker>,
    /// Opens each transaction with the server-side limits (see [`PgStore::begin`]).
    begin: Arc<str>,
    feed_key: FeedKey,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.config.schema)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` with the default [`PgConfig`] and
    /// brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PgConfig::default()).await
    }

    /// Connects to the database at `url` with `config`.
    pub async fn connect_with(url: &str, config: PgConfig) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(db)?;
        // The server abandons a statement at the same limit, so one the store gave
        // up on does not keep holding locks.
        let statement_timeout = config.timeout.as_millis().to_string();
        let options = options
            .application_name("scopegate")
            .options([("statement_timeout", statement_timeout.as_str())]);
        // One direct connection first: a pool that cannot connect only says it
        // timed out, while this says why (refused, authentication, no database).
        // It also runs the migration, so start-up never waits on the pool's
        // per-call limit.
        let limit = config.connect_timeout;
        let migrated = async {
            let mut probe = PgConnection::connect_with(&options).await.map_err(db)?;
            let key = schema::migrate(&mut probe, &config.schema, limit).await?;
            probe.close().await.map_err(db)?;
            Ok(key)
        };
        let key = within(limit, migrated).await?;
        // sqlx checks a connection with a round trip when it goes back to the
        // pool; checking it again when it comes out doubles the round trips of a
        // one-statement call. Only a connection idle for a while (a restarted
        // server may have dropped it) is checked again; any other one that broke
        // meanwhile fails its one call with `Unavailable` and is discarded.
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_IDLE_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(Self::from_parts(pool, config, key))
    }

    /// Uses a pool the app already has, with the default [`PgConfig`].
    pub async fn new(pool: PgPool) -> Result<Self, StoreError> {
        Self::with_pool(pool, PgConfig::default()).await
    }

    /// Uses a pool the app already has, with `config`; brings the schema up to
    /// date within [`PgConfig::with_connect_timeout`].
    pub async fn with_pool(pool: PgPool, config: PgConfig) -> Result<Self, StoreError> {
        let limit = config.connect_timeout;
        let migrated = async {
            let mut conn = pool.acquire().await.map_err(db)?;
            schema::migrate(&mut conn, &config.schema, limit).await
        };
        let key = within(limit, migrated).await?;
        Ok(Self::from_parts(pool, config, key))
    }

    fn from_parts(pool: PgPool, config: PgConfig, feed_key: FeedKey) -> Self {
        let limit = config.timeout.as_millis().max(1);
        Self {
            begin: format!(
                "BEGIN; SET LOCAL statement_timeout = {limit}; \
                 SET LOCAL idle_in_transaction_session_timeout = {limit}"
            )
            .into(),
            channel: config.channel().into(),
            pool,
            config: Arc::new(config),
            health: Arc::default(),
            breaker: Arc::default(),
            feed_key,
        }
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The notifications of this store's revocations; a gate's cache in front
    /// subscribes to them on its own. The feed connects with the pool's options,
    /// on a connection of its own outside the pool.
    pub fn notifications(&self) -> PgInvalidationFeed {
        PgInvalidationFeed {
            options: PgConnectOptions::clone(&self.pool.connect_options()),
            channel: self.channel.to_string(),
            key: self.feed_key.clone(),
            probe_every: self.config.probe_every,
            lag_limit: self.config.lag_limit,
            connect_timeout: self.config.timeout,
            breaker: Arc::clone(&self.breaker),
        }
    }

    fn schema(&self) -> &str {
        &self.config.schema
    }

    /// A transaction that the server itself ends past the call's time limit,
    /// whatever pool it runs on (an app's pool has no `statement_timeout` of
    /// ours): a replica frozen or cut off between locking a key's row and
    /// `COMMIT` would otherwise hold the lock until TCP gives up, hours later,
    /// and every change to that key would time out meanwhile. Set in the
    /// `BEGIN`'s own round trip.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool
            .begin_with(self.begin.to_string())
            .await
            .map_err(db)
    }

    /// Runs one call under the time limit and records whether the database
    /// answered. While the breaker is open the call is refused at once, and a
    /// call in flight when it trips fails with it.
    async fn call<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let tripped = self.breaker.tripped();
        tokio::pin!(tripped);
        tripped.as_mut().enable();
        let started = std::time::Instant::now();
        let outcome = match self.breaker.admit(started) {
            Err(refused) => {
                if refused.probe_due {
                    tokio::spawn(self.clone().probe());
                }
                Err(refused.error)
            }
            Ok(()) => {
                let outcome = tokio::select! {
                    biased;
                    outcome = within(self.config.timeout, op) => outcome,
                    () = tripped => Err(StoreError::new(
                        StoreErrorKind::Unavailable,
                        CircuitOpen(started.elapsed()),
                    )),
                };
                self.breaker.record(started, &outcome);
                outcome
            }
        };
        self.health.record(&outcome);
        outcome
    }

    /// The open breaker's probe: a round trip on a fresh connection (the pooled
    /// ones may hang on a dead path), under the call limit.
    async fn probe(self) {
        let started = std::time::Instant::now();
        let options = self.pool.connect_options();
        let round_trip = async {
            let mut conn = PgConnection::connect_with(&options).await?;
            conn.ping().await?;
            conn.close().await
        };
        match tokio::time::timeout(self.config.timeout, round_trip).await {
            Ok(Ok(())) => self.breaker.answered(started),
            _ => self.breaker.probe_failed(),
        }
    }
}

/// `op`, or [`StoreErrorKind::Unavailable`] once `limit` has passed.
async fn within<T>(
    limit: std::time::Duration,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, op).await {
        Ok(outcome) => outcome,
        Err(_) => Err(StoreError::new(
            StoreErrorKind::Unavailable,
            TimedOut(limit),
        )),
    }
}
