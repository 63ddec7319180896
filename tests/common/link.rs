//! A network link to PostgreSQL that a test can cut silently: a loopback TCP
//! relay whose connections stop carrying bytes, both ways, without closing, as
//! when a route drops packets. New connections through a cut link get no answer
//! either. It can also freeze one connection just before it sends `COMMIT`, as
//! a replica frozen between locking a row and committing.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct Link {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    freeze_at_commit: Arc<AtomicBool>,
    froze: Arc<AtomicBool>,
}

impl Link {
    /// A link to the server at `upstream` (`host:port`).
    pub async fn to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let freeze_at_commit = Arc::new(AtomicBool::new(false));
        let froze = Arc::new(AtomicBool::new(false));
        let link = Self {
            addr,
            cut: cut.clone(),
            freeze_at_commit: Arc::clone(&freeze_at_commit),
            froze: Arc::clone(&froze),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let watch = cut.subscribe();
                let (freeze, froze) = (Arc::clone(&freeze_at_commit), Arc::clone(&froze));
                tokio::spawn(relay(client, server, watch, freeze, froze));
            }
        });
        link
    }

    /// `url` (a `postgres://` URL to the upstream) rewritten to go through the link.
    pub fn url(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').unwrap();
        let (_, path) = rest.split_once('/').unwrap();
        format!("{scheme_user}@{}/{path}", self.addr)
    }

    /// Stops every connection, present and future, without closing any.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Carries bytes again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// The next connection to send `COMMIT` freezes instead, for good.
    pub fn freeze_at_next_commit(&self) {
        self.freeze_at_commit.store(true, Ordering::SeqCst);
    }

    /// Whether a connection froze at its `COMMIT`.
    pub fn froze(&self) -> bool {
        self.froze.load(Ordering::SeqCst)
    }
}

/// Whether `bytes` hold a simple-query message (`Q`) whose text starts with COMMIT.
fn is_commit(bytes: &[u8]) -> bool {
    bytes
        .windows(5 + 6)
        .any(|w| w[0] == b'Q' && w[5..].eq_ignore_ascii_case(b"COMMIT"))
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    cut: watch::Receiver<bool>,
    freeze_at_commit: Arc<AtomicBool>,
    froze: Arc<AtomicBool>,
) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let frozen = Arc::new(AtomicBool::new(false));
    let up = pump(
        client_read,
        server_write,
        cut.clone(),
        Some((freeze_at_commit, froze, Arc::clone(&frozen))),
    );
    let down = pump(server_read, client_write, cut, None);
    let (_halves, _) = tokio::join!(up, down);
    // Both halves are kept until both ends gave up: a cut link never closes a
    // connection on its own.
}

type Freeze = (Arc<AtomicBool>, Arc<AtomicBool>, Arc<AtomicBool>);

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
    freeze: Option<Freeze>,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((armed, froze, frozen)) = &freeze {
            if !frozen.load(Ordering::SeqCst)
                && is_commit(&buf[..n])
                && armed.swap(false, Ordering::SeqCst)
            {
                frozen.store(true, Ordering::SeqCst);
                froze.store(true, Ordering::SeqCst);
            }
            if frozen.load(Ordering::SeqCst) {
                // Swallow this and everything after: the server waits forever.
                continue;
            }
        }
        // While cut, hold the bytes back (a dropped packet's data never arrives:
        // dropping them here would leave the stream mid-message once restored,
        // which TCP retransmission would not).
        while *cut.borrow_and_update() {
            if cut.changed().await.is_err() {
                return (from, to);
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // The other side closed: close ours too, unless frozen or cut (then the
    // server never learns, as over a dead path).
    let silent = *cut.borrow()
        || freeze
            .as_ref()
            .is_some_and(|(_, _, f)| f.load(Ordering::SeqCst));
    if silent {
        std::future::pending::<()>().await;
    }
    let _ = to.shutdown().await;
    (from, to)
}
