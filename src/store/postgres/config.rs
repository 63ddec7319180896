//! [`PgConfig`]: where the tables live and how long to wait for the database.

use std::time::Duration;

use super::errors::{InvalidChannel, InvalidSchema};
use crate::store::{StoreError, StoreErrorKind};

/// Settings of a [`PgStore`](super::PgStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    pub(super) schema: String,
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) max_connections: u32,
    pub(super) probe_every: Duration,
    pub(super) lag_limit: Duration,
    pub(super) channel: Option<String>,
}

impl Default for PgConfig {
    /// Schema `scopegate`; 2 s per call; 30 s to connect and migrate at start;
    /// 10 pooled connections (for pools the store opens itself); the invalidation
    /// feed makes a round trip every 50 ms and the cache serves from memory at most
    /// 200 ms past the last one answered; revocations published on the channel
    /// `{schema}_revoked`.
    fn default() -> Self {
        Self {
            schema: "scopegate".into(),
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
            max_connections: 10,
            probe_every: Duration::from_millis(50),
            lag_limit: Duration::from_millis(200),
            channel: None,
        }
    }
}

impl PgConfig {
    /// The PostgreSQL schema that holds scopegate's tables (created if missing), so
    /// they sit beside the app's own. 1 to 40 characters of `a-z`, `0-9` and `_`,
    /// not starting with a digit, and not one of PostgreSQL's reserved key words
    /// (`user`, `order`, …), which would pass here and fail at start.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Result<Self, StoreError> {
        let schema = schema.into();
        let valid = is_plain_name(&schema, 40) && !RESERVED.contains(&schema.as_str());
        if !valid {
            return Err(StoreError::new(
                StoreErrorKind::Backend,
                InvalidSchema(schema),
            ));
        }
        self.schema = schema;
        Ok(self)
    }

    /// The longest one store call may take, waiting for a pooled connection, a
    /// row lock or a slow server included. Past it the call fails with
    /// [`StoreErrorKind::Unavailable`] (a 503), never hangs the request.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest [`PgStore::connect`](super::PgStore::connect) and
    /// [`PgStore::with_pool`](super::PgStore::with_pool) wait for the first
    /// connection and the schema migration. Kept apart from
    /// [`with_timeout`](Self::with_timeout): a short limit that suits requests
    /// would fail an app's start on a database still warming up, or behind the
    /// migration lock of replicas starting at the same time.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Size of the pool [`PgStore::connect`](super::PgStore::connect) opens (a pool
    /// the app passes in keeps its own size).
    #[must_use]
    pub fn with_max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How often the invalidation feed makes a round trip (`SELECT 1`) on its own
    /// connection, and the lag limit: the longest a revocation made on another
    /// replica can go unseen here. An answered round trip proves every revocation
    /// committed before it was delivered, so the cache serves from memory only
    /// until `lag_limit` after the latest one was sent, then asks the database
    /// until the next answer, however the feed fell behind (a cut network, a
    /// frozen server, a backlog on the channel). A round trip unanswered in
    /// silence for `lag_limit` also declares the database unreachable: calls are
    /// refused at once (503) until it answers again, unless other calls got
    /// answers meanwhile. The limit is at least twice `every`.
    #[must_use]
    pub fn with_feed_probe(mut self, every: Duration, lag_limit: Duration) -> Self {
        self.probe_every = every;
        self.lag_limit = lag_limit.max(every * 2);
        self
    }

    /// The `LISTEN`/`NOTIFY` channel on which every replica publishes its
    /// revocations and hears the others'; `{schema}_revoked` unless set. Set it
    /// when the app already uses that name for a channel of its own: replicas
    /// ignore what they did not seal, but still read all of it. Every
    /// replica of an app must use the same channel, so change it on all of them
    /// at once. 1 to 63 characters of `a-z`, `0-9` and `_`, not starting with a
    /// digit.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Result<Self, StoreError> {
        let channel = channel.into();
        if !is_plain_name(&channel, 63) {
            return Err(StoreError::new(
                StoreErrorKind::Backend,
                InvalidChannel(channel),
            ));
        }
        self.channel = Some(channel);
        Ok(self)
    }

    /// The schema in use.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The channel revocations are published on.
    pub fn channel(&self) -> String {
        self.channel
            .clone()
            .unwrap_or_else(|| format!("{}_revoked", self.schema))
    }
}

/// Whether `name` is 1 to `longest` characters of `a-z`, `0-9` and `_`, not
/// starting with a digit: an identifier PostgreSQL takes as written, unquoted.
fn is_plain_name(name: &str, longest: usize) -> bool {
    (1..=longest).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// PostgreSQL's reserved key words, those that cannot name a schema unquoted
/// (the "reserved" and "reserved (can be function or type)" entries of the key
/// words appendix). The names go into SQL unquoted.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];
