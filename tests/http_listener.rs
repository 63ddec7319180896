//! The layer on a real HTTP server on 127.0.0.1, with requests written byte by byte
//! so that headers no HTTP client library would send reach it too.

mod common;

use std::{net::SocketAddr, time::Duration};

use common::app::{TestApp, DATA_READ};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::timeout,
};

/// Serves the test app on an ephemeral loopback port.
async fn serve(app: &TestApp) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Sends `head` (request line and headers, without the blank line) and returns the
/// status code and the body.
async fn send_raw(addr: SocketAddr, head: &[u8]) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = head.to_vec();
        request.extend_from_slice(b"\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        // A server refusing oversized headers may close before reading them all.
        let _ = stream.write_all(&request).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        response
    };
    let response = timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the server answers within 10 s");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn get(path: &str, headers: &[&[u8]]) -> Vec<u8> {
    let mut head = format!("GET {path} HTTP/1.1").into_bytes();
    for header in headers {
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(header);
    }
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn girders_access_rules_hold_on_a_real_listener() {
    let app = TestApp::new();
    let addr = serve(&app).await;
    let bob = app.fixture.user("bob");
    let session = format!("Authorization: Bearer {}", app.session(&bob).await);
    let reader = format!(
        "Authorization: Bearer {}",
        app.scoped(&bob, &[DATA_READ]).await
    );

    let (status, body) = send_raw(addr, &get("/user", &[])).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"error\":\"unauthorized\""));
    assert_eq!(
        send_raw(addr, &get("/user", &[session.as_bytes()])).await.0,
        200
    );
    assert_eq!(
        send_raw(addr, &get("/admin", &[session.as_bytes()]))
            .await
            .0,
        403
    );
    let (status, body) = send_raw(addr, &get("/user", &[reader.as_bytes()])).await;
    assert_eq!(status, 403);
    assert!(body.contains("insufficient_scope"));
    assert_eq!(
        send_raw(addr, &get("/data", &[reader.as_bytes()])).await.0,
        200
    );
    assert_eq!(send_raw(addr, &get("/public", &[])).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_get_a_clear_4xx_never_a_5xx() {
    let app = TestApp::new();
    let addr = serve(&app).await;
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    let long_token = format!("Authorization: Bearer {}", "a".repeat(8 * 1024));
    let huge_header = format!("Authorization: Bearer {}", "a".repeat(1024 * 1024));
    let two = format!("Authorization: Bearer {token}");
    let cases: Vec<(Vec<&[u8]>, u16)> = vec![
        (vec![b"Authorization: Bearer \xff\xfe\x80"], 400),
        (vec![b"Authorization: Bearer"], 400),
        (vec![b"Authorization: Bearer \t"], 400),
        (vec![b"Authorization: Bearer a\tb"], 400),
        (vec![two.as_bytes(), two.as_bytes()], 400),
        (vec![long_token.as_bytes()], 401),
    ];
    for (headers, expected) in cases {
        let (status, body) = send_raw(addr, &get("/data", &headers)).await;
        assert_eq!(status, expected, "{headers:?}: {body}");
        assert!(body.contains("\"error\":"), "{body}");
    }
    let (status, _) = send_raw(addr, &get("/data", &[huge_header.as_bytes()])).await;
    assert!(
        (400..500).contains(&status),
        "an oversized header is a 4xx, got {status}"
    );
    // The server is still healthy afterwards.
    let valid = format!("Authorization: Bearer {token}");
    assert_eq!(
        send_raw(addr, &get("/data", &[valid.as_bytes()])).await.0,
        200
    );
}
