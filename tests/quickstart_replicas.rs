//! Two quickstart processes on one PostgreSQL database are two replicas of one app:
//! a token issued by one works on the other, and a key deleted on one is refused
//! by the other within the documented bound.
#![cfg(feature = "postgres")]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::process::{self, quickstart_binary, Running};
use serde_json::Value;

fn start(url: &str, data: &std::path::Path) -> Running {
    let mut command = Command::new(quickstart_binary());
    command
        .env("SCOPEGATE_ADDR", "127.0.0.1:0")
        .env("SCOPEGATE_DATA", data)
        .env("SCOPEGATE_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let replica = process::start(command);
    assert!(
        replica.banner.contains("data in PostgreSQL"),
        "{}",
        replica.banner
    );
    // Its feed subscribes right after start; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    replica
}

/// One HTTP/1.1 exchange over a fresh connection: status and JSON body.
fn call(addr: &str, method: &str, path: &str, auth: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let json = response
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Makes sure `target/<profile>/examples/quickstart` is the `postgres` build: cargo
/// links that path to whichever feature set it built last, and does not relink a
/// build that is already fresh.
fn build_postgres_quickstart() {
    let release = quickstart_binary().to_string_lossy().contains("/release/");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--quiet",
        "--features",
        "postgres",
        "--example",
        "quickstart",
    ]);
    if release {
        cargo.arg("--release");
    }
    assert!(cargo.status().unwrap().success());
}

#[test]
fn two_quickstarts_on_one_database_share_tokens_and_revocations() {
    build_postgres_quickstart();
    let url = common::pg_server::database_url().expect("a PostgreSQL database");
    let data = tempfile::tempdir().unwrap();
    let (a, b) = (start(&url, data.path()), start(&url, data.path()));
    // bob:bob-pass
    let (status, login) = call(
        &a.addr,
        "POST",
        "/login",
        "Authorization: Basic Ym9iOmJvYi1wYXNz\r\n",
        None,
    );
    assert_eq!(status, 200, "{login}");
    let session = login["auth_token"]["token"].as_str().unwrap().to_owned();
    assert_eq!(call(&b.addr, "GET", "/me", &bearer(&session), None).0, 200);

    let new_key = serde_json::json!({"name": "reader", "scope": ["core.data.read"]});
    let (status, key) = call(
        &a.addr,
        "POST",
        "/api_key",
        &bearer(&session),
        Some(&new_key),
    );
    assert_eq!(status, 201, "{key}");
    let exchange = serde_json::json!({"key": key["key"]});
    let (status, minted) = call(&b.addr, "POST", "/api_key/token", "", Some(&exchange));
    assert_eq!(status, 200, "{minted}");
    let reader = minted["auth_token"]["token"].as_str().unwrap().to_owned();
    for replica in [&a, &b] {
        assert_eq!(
            call(&replica.addr, "GET", "/data", &bearer(&reader), None).0,
            200
        );
    }

    let path = format!("/api_key/{}", key["id"].as_str().unwrap());
    assert_eq!(
        call(&a.addr, "DELETE", &path, &bearer(&session), None).0,
        200
    );
    let deleted = Instant::now();
    loop {
        match call(&b.addr, "GET", "/data", &bearer(&reader), None).0 {
            401 => break,
            200 => assert!(deleted.elapsed() < Duration::from_secs(1), "still accepted"),
            other => panic!("unexpected {other}"),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
