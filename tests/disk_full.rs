//! A real full disk: the sled store on a small tmpfs, filled until its writes fail.
//! A revocation that fails must never end as "not found, yet the credential works",
//! and the store must recover by itself once space is freed.
//!
//! Mounting needs root (CI runs as root). Where it is impossible the tests say so
//! loudly, and under `CI` they fail rather than pass without running.

mod common;

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

use std::{
    fs::File,
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    http::{Method, StatusCode},
    Router,
};
use common::{
    app::{get_with, request, routes, send},
    girder_scopes, Users,
};
use scopegate::{
    store::{SledStore, StoreHealth},
    AuthState, NewToken, ScopeGate,
};
use serde_json::json;

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A small tmpfs, or `None` (announced loudly) where mounting is impossible.
fn small_disk() -> Option<Tmpfs> {
    if let Some(disk) = Tmpfs::mount("4m") {
        return Some(disk);
    }
    common::skip(
        "cannot mount a tmpfs (needs root and CAP_SYS_ADMIN): the disk-full tests did not run",
    );
    None
}

/// A file taking every free byte of a filesystem, until removed.
struct Filler {
    path: PathBuf,
}

impl Filler {
    fn fill(dir: &Path) -> Self {
        let path = dir.join("filler");
        let mut file = File::create(&path).unwrap();
        for chunk in [64 * 1024, 4096, 1] {
            let bytes = vec![0xa5u8; chunk];
            // Bounded: the tmpfs holds a few MB.
            for _ in 0..100_000 {
                match file.write_all(&bytes) {
                    Ok(()) => {}
                    Err(err) if err.raw_os_error() == Some(28) => break,
                    Err(err) if err.kind() == ErrorKind::StorageFull => break,
                    Err(err) => panic!("filling the disk: {err}"),
                }
            }
        }
        Self { path }
    }

    fn free(self) {
        std::fs::remove_file(&self.path).unwrap();
    }
}

/// Log lines of the whole test binary, so each test can count its own transitions.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .init();
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How many log lines mention `path` and `what`.
fn log_lines(path: &Path, what: &str) -> usize {
    let logs = captured_logs();
    let logs = logs.lock().unwrap();
    let path = path.display().to_string();
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|line| line.contains(&path) && line.contains(what))
        .count()
}

/// The app as it would run: a cached sled store in `data`.
fn start(data: &Path, users: &Users) -> (Router, ScopeGate) {
    let state = AuthState::builder(
        ScopeGate::builder(SledStore::open(data).unwrap(), users.clone())
            .with_registry(girder_scopes()),
    )
    .build()
    .unwrap();
    (routes(state.clone()), state.gate().clone())
}

/// Whether `token` still authenticates (None: the store cannot tell right now).
async fn authenticates(router: &Router, token: &str) -> Option<bool> {
    match send(router, get_with("/token/current", Some(token)))
        .await
        .status
    {
        StatusCode::OK => Some(true),
        StatusCode::UNAUTHORIZED => Some(false),
        StatusCode::SERVICE_UNAVAILABLE => None,
        other => panic!("unexpected {other}"),
    }
}

/// One revocation to try, and the credential it must kill.
struct Revocation {
    uri: String,
    victim: String,
}

impl Revocation {
    fn request(&self, session: &str) -> axum::http::Request<axum::body::Body> {
        request(Method::DELETE, &self.uri, Some(session), None)
    }
}

/// On the full disk, revokes one victim after another until the disk refuses one
/// (its write is the first to fail), then retries that one. After every answer, a
/// "done" or "not found" must be true: the victim no longer authenticates.
/// Returns the revocation the disk refused, and how many 503s it got.
async fn revoke_until_the_disk_refuses<'a>(
    router: &Router,
    session: &str,
    revocations: &'a [Revocation],
) -> (&'a Revocation, usize) {
    for revocation in revocations {
        let mut unavailable = 0;
        for _ in 0..12 {
            let reply = send(router, revocation.request(session)).await;
            match reply.status {
                // The revocation did not happen, and the caller knows it.
                StatusCode::SERVICE_UNAVAILABLE => {
                    unavailable += 1;
                    assert_eq!(reply.error(), "temporarily_unavailable");
                }
                StatusCode::OK | StatusCode::NOT_FOUND => {
                    // Refused, or 503 if the purge of what it revoked has since
                    // hit the full disk and stopped the store: never accepted.
                    assert_ne!(
                        authenticates(router, &revocation.victim).await,
                        Some(true),
                        "answered {} while the credential still works",
                        reply.status
                    );
                    break;
                }
                other => panic!("unexpected {other}: {:?}", reply.body),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if unavailable > 0 {
            return (revocation, unavailable);
        }
    }
    panic!("the full disk never refused a revocation");
}

/// After space is freed: the revocation goes through within a bounded time.
async fn revoke_after_recovery(
    router: &Router,
    gate: &ScopeGate,
    session: &str,
    revocation: &Revocation,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = send(router, revocation.request(session)).await.status;
        if status == StatusCode::OK || status == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            Instant::now() < deadline,
            "the store did not recover in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gate.health().await.is_healthy());
    assert_eq!(authenticates(router, &revocation.victim).await, Some(false));
}

/// What a restart sees: every victim is refused, and the manager's session works.
async fn after_restart(data: &Path, users: &Users, session: &str, revocations: &[Revocation]) {
    let (router, _gate) = start(data, users);
    for revocation in revocations {
        let works = authenticates(&router, &revocation.victim).await;
        assert_eq!(
            works,
            Some(false),
            "{} works again after a restart",
            revocation.uri
        );
    }
    assert_eq!(authenticates(&router, session).await, Some(true));
}

/// The app on a small disk, with bob and a session of his to manage his credentials.
struct Scene {
    data: PathBuf,
    users: Users,
    bob: scopegate::UserId,
    router: Router,
    gate: ScopeGate,
    session: String,
}

impl Scene {
    async fn start(disk: &Tmpfs) -> Self {
        captured_logs();
        let data = disk.path().join("data");
        let users = Users::default();
        let bob = users.add("bob", false);
        let (router, gate) = start(&data, &users);
        let manager = gate
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        let session = manager.secret.expose().to_owned();
        Self {
            data,
            users,
            bob,
            router,
            gate,
            session,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revocation_on_a_full_disk_never_ends_as_not_found_while_the_token_works() {
    let Some(disk) = small_disk() else { return };
    let Scene {
        data,
        users,
        bob,
        router,
        gate,
        session,
    } = Scene::start(&disk).await;
    let mut revocations = Vec::new();
    for _ in 0..40 {
        let victim = gate
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        let victim = victim_of(&router, victim).await;
        revocations.push(victim);
    }

    let filler = Filler::fill(disk.path());
    let (refused, _) = revoke_until_the_disk_refuses(&router, &session, &revocations).await;
    assert!(matches!(gate.health().await, StoreHealth::Failing { .. }));

    filler.free();
    revoke_after_recovery(&router, &gate, &session, refused).await;
    assert_eq!(log_lines(&data, "token store failing"), 1);
    assert_eq!(log_lines(&data, "token store recovered"), 1);

    // Only those answered 200 or 404 must stay dead: stop at the refused one.
    let done = revocations
        .iter()
        .position(|r| std::ptr::eq(r, refused))
        .unwrap();
    drop((router, gate));
    after_restart(&data, &users, &session, &revocations[..=done]).await;
}

/// A cached, working victim token.
async fn victim_of(router: &Router, issued: scopegate::IssuedToken) -> Revocation {
    let victim = issued.secret.expose().to_owned();
    assert_eq!(authenticates(router, &victim).await, Some(true));
    Revocation {
        uri: format!("/token/{}", issued.token.id),
        victim,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deletion_on_a_full_disk_never_ends_as_not_found_while_its_token_works() {
    let Some(disk) = small_disk() else { return };
    let Scene {
        data,
        users,
        bob: _,
        router,
        gate,
        session,
    } = Scene::start(&disk).await;
    let mut revocations = Vec::new();
    let mut key_secrets = Vec::new();
    for round in 0..20 {
        let body = json!({ "name": format!("ci{round}"), "scope": ["core.data.read"] });
        let created = send(
            &router,
            request(Method::POST, "/api_key", Some(&session), Some(body)),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED);
        let key_secret = created.body["key"].as_str().unwrap().to_owned();
        let minted = send(&router, exchange(&key_secret)).await;
        let victim = minted.body["auth_token"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(authenticates(&router, &victim).await, Some(true));
        let uri = format!("/api_key/{}", created.body["id"].as_str().unwrap());
        revocations.push(Revocation { uri, victim });
        key_secrets.push(key_secret);
    }

    let filler = Filler::fill(disk.path());
    let (refused, _) = revoke_until_the_disk_refuses(&router, &session, &revocations).await;
    let done = revocations
        .iter()
        .position(|r| std::ptr::eq(r, refused))
        .unwrap();

    filler.free();
    revoke_after_recovery(&router, &gate, &session, refused).await;
    for secret in &key_secrets[..=done] {
        assert_eq!(
            send(&router, exchange(secret)).await.error(),
            "invalid_grant"
        );
    }
    assert_eq!(log_lines(&data, "token store failing"), 1);
    assert_eq!(log_lines(&data, "token store recovered"), 1);

    drop((router, gate));
    after_restart(&data, &users, &session, &revocations[..=done]).await;
    let (router, _gate) = start(&data, &users);
    for secret in &key_secrets[..=done] {
        assert_eq!(
            send(&router, exchange(secret)).await.error(),
            "invalid_grant"
        );
    }
}

fn exchange(key: &str) -> axum::http::Request<axum::body::Body> {
    request(
        Method::POST,
        "/api_key/token",
        None,
        Some(json!({ "key": key })),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstarts_health_is_503_while_the_disk_is_full_and_200_once_it_is_not() {
    let Some(disk) = small_disk() else { return };
    let data = disk.path().join("data");
    let router = quickstart::app(quickstart::auth_state(&data).unwrap());
    let health = || async { send(&router, get_with("/health", None)).await };
    assert_eq!(health().await.status, StatusCode::OK);
    let login = || {
        axum::http::Request::post("/login")
            .header("Authorization", "Basic Ym9iOmJvYi1wYXNz")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    assert_eq!(send(&router, login()).await.status, StatusCode::OK);

    let filler = Filler::fill(disk.path());
    let mut refused = false;
    for _ in 0..10_000 {
        if send(&router, login()).await.status == StatusCode::SERVICE_UNAVAILABLE {
            refused = true;
            break;
        }
    }
    assert!(refused, "10 000 logins on a full disk all succeeded");
    let reply = health().await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["status"], "failing");
    assert!(
        reply.body["error"].as_str().unwrap().contains("space"),
        "{:?}",
        reply.body
    );

    filler.free();
    let deadline = Instant::now() + Duration::from_secs(10);
    while health().await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "/health did not recover in 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(send(&router, login()).await.status, StatusCode::OK);
}
