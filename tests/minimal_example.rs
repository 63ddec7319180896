//! `examples/minimal.rs`, the README's smallest app, as a process: its login
//! route issues a token that its guarded route accepts.
#![cfg(all(feature = "sled", feature = "axum"))]

mod common;

use std::process::{Command, Stdio};

use common::process::{self, bearer, call, example_binary};
use serde_json::json;

#[test]
fn the_minimal_example_logs_in_and_guards_its_route() {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(example_binary("minimal"));
    command
        .env("SCOPEGATE_ADDR", "127.0.0.1:0")
        .env("SCOPEGATE_DATA", data.path())
        .stdin(Stdio::null());
    let app = process::start(command);
    let login = |password: &str| {
        let body = json!({"user": "bob", "password": password});
        call(&app.addr, "POST", "/login", "", Some(&body))
    };
    assert_eq!(login("wrong").0, 401);
    let (status, body) = login("bob-pass");
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let data = |auth: &str| call(&app.addr, "GET", "/data", auth, None).0;
    assert_eq!(data(""), 401);
    assert_eq!(data(&bearer(token)), 200);
}
