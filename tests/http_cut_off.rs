//! A revocation whose HTTP request is cut off holds: the client resets its
//! connection a sweep of delays after sending a revoking request (a closed
//! browser tab, a proxy giving up), and whatever became of the request, nothing
//! the store dropped keeps authenticating, before or after a retry.

mod common;

use std::time::Duration;

use common::{app::routes, girder_scopes, Users};
use scopegate::{
    store::{SledStore, TokenStore},
    AuthState, IssuedToken, NewApiKey, NewToken, ScopeGate,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A served app over a cached sled store, with a direct handle on the store.
struct Served {
    addr: std::net::SocketAddr,
    gate: ScopeGate,
    real: SledStore,
    users: Users,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let real = SledStore::open(dir.path()).unwrap();
        let users = Users::default();
        let gate = ScopeGate::builder(real.clone(), users.clone())
            .with_registry(girder_scopes())
            .build()
            .unwrap();
        let app = routes(AuthState::new(gate.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            gate,
            real,
            users,
            _dir: dir,
        }
    }

    /// Sends `request` on a new connection and reads the status of its answer.
    async fn status(&self, request: &str) -> u16 {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
    }

    /// Sends `request` and resets the connection `after` it was written.
    async fn cut_off(&self, request: &str, after: Duration) {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(after).await;
        stream.set_zero_linger().unwrap();
        drop(stream);
    }

    /// Whether `token` authenticates `GET /user` over HTTP, on two connections.
    async fn accepted(&self, token: &IssuedToken) -> bool {
        let request = http_request("GET", "/user", token.secret.expose(), None);
        let mut accepted = false;
        for _ in 0..2 {
            match self.status(&request).await {
                200 => accepted = true,
                401 => {}
                other => panic!("GET /user answered {other}"),
            }
        }
        accepted
    }
}

fn http_request(method: &str, path: &str, bearer: &str, body: Option<&str>) -> String {
    let body = body.unwrap_or("");
    format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {bearer}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// What a round revokes, and with which request.
#[derive(Debug, Clone, Copy)]
enum Revoking {
    Token,
    Deactivation,
    Deletion,
    Rotation,
    SessionLogout,
}

/// The credentials of one round.
struct Round {
    session: IssuedToken,
    key_id: String,
    minted: IssuedToken,
}

impl Round {
    async fn new(served: &Served) -> Self {
        let bob = served.users.add("bob", false);
        let gate = &served.gate;
        let session = gate
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        let (key, minted) = common::key_and_token(gate, &bob, NewApiKey::new("k")).await;
        Self {
            session,
            key_id: key.key.id.as_str().to_owned(),
            minted,
        }
    }

    /// The request, and the token it revokes.
    fn request(&self, revoking: Revoking) -> (String, &IssuedToken) {
        let by = self.session.secret.expose();
        let key = &self.key_id;
        match revoking {
            Revoking::Token => {
                let path = format!("/token/{}", self.minted.token.id.as_str());
                (http_request("DELETE", &path, by, None), &self.minted)
            }
            Revoking::Deactivation => {
                let path = format!("/api_key/{key}");
                let body = Some(r#"{"active": false}"#);
                (http_request("PUT", &path, by, body), &self.minted)
            }
            Revoking::Deletion => {
                let path = format!("/api_key/{key}");
                (http_request("DELETE", &path, by, None), &self.minted)
            }
            Revoking::Rotation => {
                let path = format!("/api_key/{key}/rotate");
                (http_request("POST", &path, by, Some("{}")), &self.minted)
            }
            Revoking::SessionLogout => {
                let own = self.minted.secret.expose();
                (
                    http_request("DELETE", "/token/session", own, None),
                    &self.minted,
                )
            }
        }
    }
}

/// Rounds over delays from 0 to 3 ms; returns how many left a credential the
/// store dropped authenticating.
async fn sweep(revoking: Revoking) -> usize {
    let served = Served::start().await;
    let mut failures = Vec::new();
    for round in 0..26u64 {
        let creds = Round::new(&served).await;
        let (request, revoked) = creds.request(revoking);
        assert!(served.accepted(revoked).await, "warm before the round");
        served
            .cut_off(&request, Duration::from_micros(round % 13 * 250))
            .await;
        // However far the request got: if the store dropped the token, it is
        // refused from now on.
        let gone = served.real.token_by_digest(&revoked.token.digest).await;
        if gone.expect("the store answers").is_none() && served.accepted(revoked).await {
            failures.push(format!("round {round}: dropped, still accepted"));
        }
        // The client retries, and whatever the retry answers (done, not found,
        // unchanged), the token is refused.
        let retried = served.status(&request).await;
        if served.accepted(revoked).await {
            failures.push(format!(
                "round {round}: retry answered {retried}, still accepted"
            ));
        }
    }
    assert!(failures.is_empty(), "{revoking:?}: {failures:#?}");
    failures.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_token_revocation_never_leaves_the_token_working() {
    assert_eq!(sweep(Revoking::Token).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_key_deactivation_never_leaves_its_tokens_working() {
    assert_eq!(sweep(Revoking::Deactivation).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_key_deletion_never_leaves_its_tokens_working() {
    assert_eq!(sweep(Revoking::Deletion).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_key_rotation_never_leaves_its_tokens_working() {
    assert_eq!(sweep(Revoking::Rotation).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_logout_never_leaves_the_session_working() {
    assert_eq!(sweep(Revoking::SessionLogout).await, 0);
}
