//! The quickstart's contract (DESIGN section 7), driven through its own `app()`.

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
    Router,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Quickstart {
    router: Router,
    _dir: tempfile::TempDir,
}

fn quickstart() -> Quickstart {
    let dir = tempfile::tempdir().unwrap();
    let state = quickstart::auth_state(dir.path()).unwrap();
    Quickstart {
        router: quickstart::app(state),
        _dir: dir,
    }
}

async fn call(app: &Quickstart, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn req(method: Method, uri: &str, auth: Option<String>, body: Option<Value>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(auth) = auth {
        builder = builder.header(header::AUTHORIZATION, auth);
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap()
}

/// `POST /login` with HTTP Basic; returns the bearer token.
async fn login(app: &Quickstart, user: &str, password: &str) -> (StatusCode, Value) {
    let basic = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    call(app, req(Method::POST, "/login", Some(basic), None)).await
}

/// `POST /api_key/token` for the key secret `key`.
async fn exchange(app: &Quickstart, key: &Value) -> (StatusCode, Value) {
    let body = json!({ "key": key });
    call(app, req(Method::POST, "/api_key/token", None, Some(body))).await
}

fn bearer(token: &Value) -> Option<String> {
    Some(format!("Bearer {}", token.as_str().unwrap()))
}

#[tokio::test]
async fn demo_users_log_in_with_http_basic_and_get_a_full_session() {
    let app = quickstart();
    let (status, body) = login(&app, "bob", "bob-pass").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["id"], "bob");
    assert_eq!(body["auth_token"]["scope"], json!(["core.user_auth"]));
    let (status, me) = call(
        &app,
        req(
            Method::GET,
            "/me",
            bearer(&body["auth_token"]["token"]),
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me, json!({ "id": "bob", "name": "bob", "admin": false }));
    for (user, password) in [("bob", "alice-pass"), ("mallory", "x"), ("bob", "")] {
        let (status, body) = login(&app, user, password).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user}");
        assert_eq!(body["error"], "unauthorized");
    }
}

#[tokio::test]
async fn health_is_public_and_me_needs_a_token() {
    let app = quickstart();
    assert_eq!(
        call(&app, req(Method::GET, "/health", None, None)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, req(Method::GET, "/me", None, None)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_read_only_key_reads_data_and_cannot_write_it() {
    let app = quickstart();
    let (_, session) = login(&app, "bob", "bob-pass").await;
    let session = bearer(&session["auth_token"]["token"]);
    let key = json!({ "name": "reader", "scope": ["core.data.read"] });
    let (status, key) = call(
        &app,
        req(Method::POST, "/api_key", session.clone(), Some(key)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, token) = exchange(&app, &key["key"]).await;
    assert_eq!(status, StatusCode::OK);
    let reader = bearer(&token["auth_token"]["token"]);
    let (status, items) = call(&app, req(Method::GET, "/data", reader.clone(), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(items.as_array().is_some());
    let item = json!({ "item": "x" });
    let (status, body) = call(
        &app,
        req(Method::POST, "/data", reader.clone(), Some(item.clone())),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(
        call(&app, req(Method::GET, "/me", reader, None)).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = call(
        &app,
        req(Method::POST, "/data", session.clone(), Some(item)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, items) = call(&app, req(Method::GET, "/data", session, None)).await;
    assert!(items.as_array().unwrap().contains(&json!("x")));
}

#[tokio::test]
async fn admin_settings_need_an_admin_and_accept_her_setting_read_token() {
    let app = quickstart();
    let (_, bob) = login(&app, "bob", "bob-pass").await;
    let (_, alice) = login(&app, "alice", "alice-pass").await;
    let bob = bearer(&bob["auth_token"]["token"]);
    let alice = bearer(&alice["auth_token"]["token"]);
    assert_eq!(
        call(&app, req(Method::GET, "/admin/settings", bob, None))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            req(Method::GET, "/admin/settings", alice.clone(), None)
        )
        .await
        .0,
        StatusCode::OK
    );
    let key = json!({ "name": "settings", "scope": ["core.setting.read"] });
    let (status, key) = call(&app, req(Method::POST, "/api_key", alice, Some(key))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, token) = exchange(&app, &key["key"]).await;
    let scoped = bearer(&token["auth_token"]["token"]);
    assert_eq!(
        call(
            &app,
            req(Method::GET, "/admin/settings", scoped.clone(), None)
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, req(Method::GET, "/me", scoped, None)).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_scopegate_router_is_served_at_the_root() {
    let app = quickstart();
    let (status, scopes) = call(&app, req(Method::GET, "/token/scopes", None, None)).await;
    assert_eq!(status, StatusCode::OK);
    let admin: Vec<&str> = scopes["admin_custom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(admin, ["core.setting.read", "core.plugins.read"]);
    let (status, session) = call(&app, req(Method::GET, "/token/session", None, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(session["token"].as_str().unwrap().starts_with("sg_tok_"));
}

/// Status, headers (`date` aside) and body bytes: all a caller observes.
async fn observe(app: &Quickstart, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let mut headers: Vec<String> = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != header::DATE)
        .map(|(name, value)| format!("{name}: {value:?}"))
        .collect();
    headers.sort();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers.join("\n"), bytes.to_vec())
}

#[tokio::test]
async fn another_users_key_and_token_ids_answer_exactly_as_made_up_ones() {
    let app = quickstart();
    let (_, alice) = login(&app, "alice", "alice-pass").await;
    let alice_token_id = alice["auth_token"]["id"].as_str().unwrap().to_owned();
    let alice = bearer(&alice["auth_token"]["token"]);
    let (_, bob) = login(&app, "bob", "bob-pass").await;
    let bob = bearer(&bob["auth_token"]["token"]);
    let (status, key) = call(
        &app,
        req(
            Method::POST,
            "/api_key",
            alice.clone(),
            Some(json!({ "name": "alice's" })),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let key_id = key["id"].as_str().unwrap();
    let routes = |key: &str, token: &str| {
        [
            (
                Method::PUT,
                format!("/api_key/{key}"),
                Some(json!({ "active": false })),
            ),
            (
                Method::POST,
                format!("/api_key/{key}/rotate"),
                Some(json!({})),
            ),
            (Method::DELETE, format!("/api_key/{key}"), None),
            (Method::DELETE, format!("/token/{token}"), None),
        ]
    };
    let made_up = routes("AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBB");
    for ((method, uri, body), (_, made_up_uri, made_up_body)) in
        routes(key_id, &alice_token_id).into_iter().zip(made_up)
    {
        let theirs = observe(&app, req(method.clone(), &uri, bob.clone(), body)).await;
        let unknown = observe(
            &app,
            req(method.clone(), &made_up_uri, bob.clone(), made_up_body),
        )
        .await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(theirs, unknown, "{method} {uri}");
    }
    // Alice's key and session are untouched.
    let (status, _) = exchange(&app, &key["key"]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        call(&app, req(Method::GET, "/me", alice, None)).await.0,
        StatusCode::OK
    );
}
