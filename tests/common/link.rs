//! A network link to PostgreSQL that a test can cut silently: a loopback TCP
//! relay whose connections stop carrying bytes, both ways, without closing, as
//! when a route drops packets. New connections through a cut link get no answer
//! either. It can also freeze one connection just before it sends `COMMIT`, as
//! a replica frozen between locking a row and committing, and slow what the
//! server sends to a trickle, as a congested path or a slow reader.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
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
    /// Bytes per second from the server, each connection; 0: no limit.
    trickle: Arc<AtomicU64>,
}

/// The server address of a `postgres://user@host:port/db` URL.
pub fn server_of(url: &str) -> SocketAddr {
    let (_, rest) = url.split_once('@').unwrap();
    rest.split_once('/').unwrap().0.parse().unwrap()
}

impl Link {
    /// A link to the server at `upstream` (`host:port`).
    pub async fn to(upstream: SocketAddr) -> Self {
        Self::between("127.0.0.1:0".parse().unwrap(), upstream).await
    }

    /// A link from `listen` (another host's way in) to the server at `upstream`.
    pub async fn between(listen: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let freeze_at_commit = Arc::new(AtomicBool::new(false));
        let froze = Arc::new(AtomicBool::new(false));
        let trickle = Arc::new(AtomicU64::new(0));
        let link = Self {
            addr,
            cut: cut.clone(),
            freeze_at_commit: Arc::clone(&freeze_at_commit),
            froze: Arc::clone(&froze),
            trickle: Arc::clone(&trickle),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let watch = cut.subscribe();
                let (freeze, froze) = (Arc::clone(&freeze_at_commit), Arc::clone(&froze));
                let trickle = Arc::clone(&trickle);
                tokio::spawn(relay(client, server, watch, (freeze, froze), trickle));
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

    /// Lets each connection receive at most `bytes_per_second` from the server
    /// (`None`: as fast as it comes).
    pub fn trickle(&self, bytes_per_second: Option<u64>) {
        self.trickle
            .store(bytes_per_second.unwrap_or(0), Ordering::SeqCst);
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
    (freeze_at_commit, froze): (Arc<AtomicBool>, Arc<AtomicBool>),
    trickle: Arc<AtomicU64>,
) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let frozen = Arc::new(AtomicBool::new(false));
    let up = pump(
        client_read,
        server_write,
        cut.clone(),
        Direction::Up((freeze_at_commit, froze, Arc::clone(&frozen))),
    );
    let down = pump(server_read, client_write, cut, Direction::Down(trickle));
    let (_halves, _) = tokio::join!(up, down);
    // Both halves are kept until both ends gave up: a cut link never closes a
    // connection on its own.
}

/// Armed, froze (for the test to see), frozen (this connection).
type Freeze = (Arc<AtomicBool>, Arc<AtomicBool>, Arc<AtomicBool>);

enum Direction {
    /// Client to server: may freeze at `COMMIT`.
    Up(Freeze),
    /// Server to client: may trickle.
    Down(Arc<AtomicU64>),
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
    direction: Direction,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let freeze = match &direction {
        Direction::Up(freeze) => Some(freeze),
        Direction::Down(_) => None,
    };
    loop {
        let limit = match &direction {
            Direction::Down(rate) => rate.load(Ordering::SeqCst),
            Direction::Up(_) => 0,
        };
        // A trickle reads a little at a time, so the server's data waits in
        // the socket, not here.
        let chunk = if limit == 0 { buf.len() } else { 1024 };
        let n = match from.read(&mut buf[..chunk]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if limit > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / limit as f64)).await;
        }
        if let Some((armed, froze, frozen)) = freeze {
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
    let silent = *cut.borrow() || freeze.is_some_and(|(_, _, f)| f.load(Ordering::SeqCst));
    if silent {
        std::future::pending::<()>().await;
    }
    let _ = to.shutdown().await;
    (from, to)
}
