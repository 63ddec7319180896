//! Cross-instance invalidation over `LISTEN/NOTIFY`.
//!
//! Every revoking write publishes what it revoked (tokens' digests, keys' and
//! users' tags) with `pg_notify` inside its own transaction, so the notification
//! goes out exactly when the write commits. Each instance's [`PgInvalidationFeed`]
//! listens on a connection of its own, outside the request pool, and drops those
//! digests from its cache.
//!
//! **Lag, not silence.** Every `probe_every` the feed makes a round trip
//! (`SELECT 1`) on the listening connection. PostgreSQL sends a session the
//! notifications committed before a statement ahead of that statement's answer, so
//! an answer proves that everything committed before the round trip began has
//! been delivered, however busy the channel. The cache serves from memory only
//! until `lag_limit` after the start of the latest answered round trip; past it,
//! lookups ask the database, whether or not a timer noticed. A round trip
//! unanswered for `lag_limit` while notifications still arrive is a backlog: the
//! cache waits, bypassed but not emptied, for the feed to catch up. One
//! unanswered in silence declares the database unreachable (the
//! [breaker](super::breaker) opens, unless something else got an answer since)
//! and the connection lost. The round trips take no transaction id and write
//! nothing: liveness costs the database one trivial statement per replica per
//! `probe_every`, however many replicas there are.
//!
//! **Sealed payloads.** Any role that can connect can `NOTIFY` any channel. Each
//! payload carries an HMAC under a key kept in the schema (`feed_key`, readable
//! only by roles granted the schema's tables); payloads without a valid one are
//! ignored, so a flood of garbage neither empties the fleet's caches nor sends
//! them to the database. The payloads are not encrypted: a role that can `LISTEN`
//! sees when revocations happen and the digests and tags revoked (a tag is a hash
//! of a key or user id, so a guessed id can be confirmed).

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::{
    postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions},
    PgConnection,
};

use super::{breaker::Breaker, errors::db};
use crate::{
    secret::{self, SecretDigest},
    store::{InvalidationFeed, InvalidationSink, StoreError, StoreErrorKind},
};

/// Digests per notification: 100 × 65 bytes and the seal stay under PostgreSQL's
/// 8000-byte payload.
const PER_NOTIFICATION: usize = 100;
/// Body prefix of a revocation; the rest is comma-separated hex digests.
const REVOKED: &str = "r:";
/// Bytes of the HMAC a payload carries (hex-encoded, then `:`).
const SEAL_BYTES: usize = 16;
/// Wait between attempts to (re)connect the listener.
const RECONNECT_EVERY: Duration = Duration::from_millis(100);
/// The least time between two warnings about ignored payloads.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The key that seals the channel's payloads, shared by every replica through
/// the schema.
#[derive(Clone)]
pub(super) struct FeedKey([u8; 32]);

impl std::fmt::Debug for FeedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedKey(..)")
    }
}

impl FeedKey {
    pub(super) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    fn mac(&self, channel: &str, body: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(channel.as_bytes());
        mac.update(b"\n");
        mac.update(body.as_bytes());
        mac
    }

    /// `body` with its seal in front: `hex(hmac[..16]):body`.
    fn seal(&self, channel: &str, body: &str) -> String {
        let tag = self.mac(channel, body).finalize().into_bytes();
        format!("{}:{body}", secret::to_hex(&tag[..SEAL_BYTES]))
    }

    /// The body of `payload` if its seal is this key's (compared in constant time).
    fn open<'a>(&self, channel: &str, payload: &'a str) -> Option<&'a str> {
        let (hex, body) = payload.split_once(':')?;
        let tag: [u8; SEAL_BYTES] = secret::from_hex(hex)?;
        self.mac(channel, body)
            .verify_truncated_left(&tag)
            .ok()
            .map(|()| body)
    }
}

/// Publishes `digests` on `channel`, delivered when the surrounding transaction commits.
pub(super) async fn publish(
    conn: &mut PgConnection,
    channel: &str,
    key: &FeedKey,
    digests: &[SecretDigest],
) -> Result<(), StoreError> {
    if digests.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = digests
        .chunks(PER_NOTIFICATION)
        .map(|chunk| {
            let hex: Vec<String> = chunk.iter().map(SecretDigest::to_hex).collect();
            key.seal(channel, &format!("{REVOKED}{}", hex.join(",")))
        })
        .collect();
    sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .bind(channel)
        .bind(payloads)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// What a sealed body says.
#[derive(Debug, PartialEq)]
enum Message {
    Revoked(Vec<SecretDigest>),
    /// Sealed by a replica but not ours to read (a newer format?): treat as
    /// "anything may be revoked".
    Unreadable,
}

fn parse(body: &str) -> Message {
    let Some(list) = body.strip_prefix(REVOKED) else {
        return Message::Unreadable;
    };
    list.split(',')
        .map(SecretDigest::from_hex)
        .collect::<Option<Vec<_>>>()
        .map_or(Message::Unreadable, Message::Revoked)
}

/// The [`InvalidationFeed`] of a [`PgStore`](super::PgStore): listens for the
/// revocations every instance publishes, on a connection of its own. Made by
/// [`PgStore::notifications`](super::PgStore::notifications).
pub struct PgInvalidationFeed {
    pub(super) options: PgConnectOptions,
    pub(super) channel: String,
    pub(super) key: FeedKey,
    pub(super) probe_every: Duration,
    pub(super) lag_limit: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) breaker: std::sync::Arc<Breaker>,
}

impl std::fmt::Debug for PgInvalidationFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the connect options: they hold the password.
        f.debug_struct("PgInvalidationFeed")
            .field("channel", &self.channel)
            .field("probe_every", &self.probe_every)
            .field("lag_limit", &self.lag_limit)
            .finish_non_exhaustive()
    }
}

impl InvalidationFeed for PgInvalidationFeed {
    fn start(self: Box<Self>, sink: InvalidationSink) {
        tokio::spawn(self.listen(sink));
    }
}

/// Payloads ignored since the last warning about them.
#[derive(Default)]
struct Ignored {
    count: u64,
    warned_at: Option<Instant>,
}

impl PgInvalidationFeed {
    /// Listens until the cache is dropped, reconnecting whenever the connection
    /// is lost; the cache is bypassed while it is.
    async fn listen(self: Box<Self>, sink: InvalidationSink) {
        let mut down: Option<Instant> = None;
        let mut ignored = Ignored::default();
        while !sink.is_closed() {
            let why = match self.subscribe(&sink, &mut ignored).await {
                Ok(mut listener) => {
                    sink.connected();
                    match down.take() {
                        Some(since) => tracing::info!(
                            after = ?since.elapsed(),
                            "token cache invalidation feed connected: the cache serves again"
                        ),
                        None => tracing::debug!("token cache invalidation feed connected"),
                    }
                    let why = self.relay(&mut listener, &sink, &mut ignored).await;
                    sink.disconnected();
                    why
                }
                Err(why) => why,
            };
            if sink.is_closed() {
                return;
            }
            if down.is_none() {
                tracing::warn!(reason = %why, "token cache invalidation feed lost: the cache is bypassed until it reconnects");
                down = Some(Instant::now());
            }
            tokio::time::sleep(RECONNECT_EVERY).await;
        }
    }

    /// A connection of the feed's own (a pool of one, apart from the request
    /// pool) listening on the channel, its first round trip answered.
    async fn subscribe(
        &self,
        sink: &InvalidationSink,
        ignored: &mut Ignored,
    ) -> Result<PgListener, String> {
        let started = Instant::now();
        let name = format!("scopegate feed {}", self.channel);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.connect_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(self.options.clone().application_name(&name));
        let connect = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            // A lost connection ends the subscription here; a new one starts
            // with an emptied cache.
            listener.eager_reconnect(false);
            listener.ignore_pool_close_event(true);
            listener.listen(&self.channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        // A connection that has not come up within the lag limit is silence like
        // an unanswered round trip: the breaker hears of it then (it trips unless
        // something else got an answer since), while the attempt goes on.
        let connect = async {
            tokio::pin!(connect);
            match tokio::time::timeout(self.lag_limit, &mut connect).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    self.breaker.unanswered(started);
                    connect.await
                }
            }
        };
        let mut listener = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(listener)) => listener,
            Ok(Err(err)) => {
                let why = format!("cannot connect: {err}");
                // Refused or cut off, not turned away (a wrong password answers).
                if db(err).kind() == StoreErrorKind::Unavailable {
                    self.breaker.unanswered(started);
                }
                return Err(why);
            }
            Err(_) => {
                self.breaker.unanswered(started);
                return Err(format!("cannot connect within {:?}", self.connect_timeout));
            }
        };
        self.round_trip(&mut listener, sink, ignored).await?;
        Ok(listener)
    }

    /// Passes revocations to the sink and makes a round trip every
    /// `probe_every`, until the connection fails or a round trip goes
    /// unanswered; returns why it stopped.
    async fn relay(
        &self,
        listener: &mut PgListener,
        sink: &InvalidationSink,
        ignored: &mut Ignored,
    ) -> String {
        let mut next_probe = Instant::now() + self.probe_every;
        loop {
            if sink.is_closed() {
                return "the cache was dropped".into();
            }
            // `try_recv` is cancel-safe: a message half read stays buffered.
            match tokio::time::timeout_at(next_probe.into(), listener.try_recv()).await {
                Ok(Ok(Some(notification))) => self.deliver(&notification, sink, ignored),
                Ok(Ok(None)) => return "the connection was closed".into(),
                Ok(Err(err)) => return err.to_string(),
                Err(_) => {
                    next_probe = Instant::now() + self.probe_every;
                    if let Err(why) = self.round_trip(listener, sink, ignored).await {
                        return why;
                    }
                }
            }
        }
    }

    /// One `SELECT 1` on the listening connection: once answered, every
    /// notification committed before it was sent has been delivered, so the
    /// cache may serve until `lag_limit` after it was sent.
    async fn round_trip(
        &self,
        listener: &mut PgListener,
        sink: &InvalidationSink,
        ignored: &mut Ignored,
    ) -> Result<(), String> {
        let sent = Instant::now();
        let answer = sqlx::query("SELECT 1").execute(&mut *listener);
        match tokio::time::timeout(self.lag_limit, answer).await {
            Ok(Ok(_)) => {
                // Notifications that came in ahead of the answer wait in the
                // listener's buffer: they are older than the answer.
                self.deliver_buffered(listener, sink, ignored);
                self.breaker.answered(sent);
                sink.vouch_until(sent + self.lag_limit);
                Ok(())
            }
            // An error is an answer: the connection failed, the server did not
            // go silent.
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => {
                // Behind a backlog, notifications keep arriving ahead of the
                // answer: the cache stays bypassed (its deadline passes) but
                // keeps its contents, and the answer is skipped when it comes.
                // Silence is a cut: the database is unreachable from here.
                if self.deliver_buffered(listener, sink, ignored) > 0 {
                    return Ok(());
                }
                self.breaker.unanswered(sent);
                Err(format!(
                    "no answer to a round trip within {:?}",
                    self.lag_limit
                ))
            }
        }
    }

    /// Delivers the notifications the listener buffered while a statement ran;
    /// returns how many there were.
    fn deliver_buffered(
        &self,
        listener: &mut PgListener,
        sink: &InvalidationSink,
        ignored: &mut Ignored,
    ) -> usize {
        let mut arrived = 0;
        while let Some(notification) = listener.next_buffered() {
            self.deliver(&notification, sink, ignored);
            arrived += 1;
        }
        arrived
    }

    fn deliver(
        &self,
        notification: &PgNotification,
        sink: &InvalidationSink,
        ignored: &mut Ignored,
    ) {
        let Some(body) = self.key.open(&self.channel, notification.payload()) else {
            ignored.count += 1;
            let due = ignored
                .warned_at
                .is_none_or(|at| at.elapsed() >= WARN_EVERY);
            if due {
                tracing::warn!(
                    ignored = ignored.count,
                    process_id = notification.process_id(),
                    "ignoring notifications on the invalidation channel that no replica sealed"
                );
                ignored.count = 0;
                ignored.warned_at = Some(Instant::now());
            }
            return;
        };
        match parse(body) {
            Message::Revoked(digests) => sink.revoked(&digests),
            Message::Unreadable => {
                sink.disconnected();
                sink.connected();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_payloads_round_trip_and_anything_else_is_refused() {
        let key = FeedKey([3; 32]);
        let digests = [
            SecretDigest::from_bytes([7; 32]),
            SecretDigest::from_bytes([9; 32]),
        ];
        let hex: Vec<String> = digests.iter().map(SecretDigest::to_hex).collect();
        let body = format!("{REVOKED}{}", hex.join(","));
        let payload = key.seal("chan", &body);
        let full: Vec<String> = (0..PER_NOTIFICATION).map(|_| hex[0].clone()).collect();
        let largest = key.seal("chan", &format!("{REVOKED}{}", full.join(",")));
        assert!(largest.len() < 8000, "{} bytes", largest.len());
        assert_eq!(key.open("chan", &payload), Some(body.as_str()));
        assert_eq!(parse(&body), Message::Revoked(digests.to_vec()));
        assert_eq!(
            key.open("other", &payload),
            None,
            "sealed for another channel"
        );
        assert_eq!(FeedKey([4; 32]).open("chan", &payload), None, "another key");
        assert_eq!(key.open("chan", &body), None, "unsealed");
        let mut forged = payload.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            key.open("chan", std::str::from_utf8(&forged).unwrap()),
            None
        );
        assert_eq!(parse("r:zz"), Message::Unreadable);
        assert_eq!(parse("v2:whatever"), Message::Unreadable);
    }
}
