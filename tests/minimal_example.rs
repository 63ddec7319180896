//! `examples/minimal.rs`, the README's smallest app, as a process: its login
//! route issues a token that its guarded route accepts.
#![cfg(all(feature = "sled", feature = "axum"))]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use common::process::{self, example_binary};

/// One HTTP/1.1 exchange over a fresh connection: status and body.
fn call(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

fn get_data(addr: &str, auth: &str) -> u16 {
    call(
        addr,
        &format!("GET /data HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n"),
    )
    .0
}

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
        let body = format!(r#"{{"user": "bob", "password": "{password}"}}"#);
        call(
            &app.addr,
            &format!(
                "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    assert_eq!(login("wrong").0, 401);
    let (status, body) = login("bob-pass");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = json["token"].as_str().unwrap();
    assert_eq!(get_data(&app.addr, ""), 401);
    assert_eq!(
        get_data(&app.addr, &format!("Authorization: Bearer {token}\r\n")),
        200
    );
}
