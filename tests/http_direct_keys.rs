//! API keys sent as credentials over HTTP (direct key authentication on): the
//! guards judge the key's scopes, the `/token` routes about "this token" say
//! there is none, and uses show up as `last_use` in listings.

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::app::{get_with, request, TestApp};
use scopegate::{ApiKeyUpdate, NewApiKey};
use serde_json::Value;

#[tokio::test]
async fn a_key_in_the_authorization_header_passes_the_guards_its_scopes_allow() {
    let app = TestApp::with_direct_api_keys();
    let bob = app.fixture.user("bob");
    let read = app
        .fixture
        .key(&bob, NewApiKey::new("read").scope(["core.data.read"]))
        .await;
    let secret = read.secret.expose();
    assert_eq!(
        app.send(get_with("/data", Some(secret))).await.status,
        StatusCode::OK
    );
    let reply = app.send(get_with("/data_rw", Some(secret))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error(), "insufficient_scope");
    // A scoped key is not a session: routes needing the user's full session refuse it.
    assert_eq!(
        app.send(get_with("/user", Some(secret))).await.status,
        StatusCode::FORBIDDEN
    );

    let full = app.fixture.key(&bob, NewApiKey::new("full")).await;
    let reply = app
        .send(get_with("/user", Some(full.secret.expose())))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["user"], "bob");
}

#[tokio::test]
async fn a_deactivated_key_gets_the_same_invalid_token_answer_as_any_refused_credential() {
    let app = TestApp::with_direct_api_keys();
    let bob = app.fixture.user("bob");
    let key = app.fixture.key(&bob, NewApiKey::new("k")).await;
    let secret = key.secret.expose();
    assert_eq!(
        app.send(get_with("/user", Some(secret))).await.status,
        StatusCode::OK
    );
    let off = ApiKeyUpdate {
        active: Some(false),
        ..Default::default()
    };
    app.fixture
        .gate
        .update_api_key(&key.key.id, off)
        .await
        .unwrap();
    let reply = app.send(get_with("/user", Some(secret))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_token");
    assert_eq!(reply.body["message"], "Invalid or expired token.");
    assert!(reply.challenge().contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn token_routes_about_the_callers_token_answer_a_key_with_a_400_naming_the_key() {
    let app = TestApp::with_direct_api_keys();
    let bob = app.fixture.user("bob");
    let key = app.fixture.key(&bob, NewApiKey::new("k")).await;
    let secret = key.secret.expose();
    for (method, path) in [
        (Method::GET, "/token/current"),
        (Method::GET, "/token/session"),
        (Method::DELETE, "/token/session"),
    ] {
        let reply = app
            .send(request(method.clone(), path, Some(secret), None))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {path}");
        assert_eq!(reply.error(), "invalid_request");
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains("API key"), "{message}");
    }
    // The key still works: nothing was revoked.
    assert_eq!(
        app.send(get_with("/user", Some(secret))).await.status,
        StatusCode::OK
    );
}

/// Polls `GET path` with `session` until its first record's `last_use` is set.
async fn first_last_use(app: &TestApp, path: &str, session: &str) -> Value {
    for _ in 0..500 {
        let reply = app.send(get_with(path, Some(session))).await;
        assert_eq!(reply.status, StatusCode::OK);
        let last_use = &reply.body[0]["last_use"];
        if !last_use.is_null() {
            return last_use.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path}: last_use never set");
}

#[tokio::test]
async fn uses_of_keys_and_tokens_show_as_last_use_in_their_listings() {
    let app = TestApp::with_direct_api_keys();
    let bob = app.fixture.user("bob");
    let key = app.fixture.key(&bob, NewApiKey::new("k")).await;
    let session = app.session(&bob).await;
    let listed = app.send(get_with("/api_key", Some(&session))).await;
    assert!(listed.body[0]["last_use"].is_null(), "not used yet");
    app.send(get_with("/data", Some(key.secret.expose()))).await;
    assert!(first_last_use(&app, "/api_key", &session).await.is_string());
    // The session's own uses (the listings above) are recorded too.
    assert!(first_last_use(&app, "/token", &session).await.is_string());
}

/// A full-access key sent directly authenticates as its owner, but may not create,
/// change, rotate or delete keys: a leaked key could otherwise mint itself a
/// sibling that outlives its own deletion. The owner's login session may.
#[tokio::test]
async fn a_key_sent_directly_cannot_manage_keys_by_default() {
    let app = TestApp::with_direct_api_keys();
    let bob = app.fixture.user("bob");
    let full = app.fixture.key(&bob, NewApiKey::new("full")).await;
    let key = full.secret.expose();
    let id = full.key.id.as_str();
    let attempts = [
        request(
            Method::POST,
            "/api_key",
            Some(key),
            Some(serde_json::json!({"name": "sibling"})),
        ),
        request(
            Method::PUT,
            &format!("/api_key/{id}"),
            Some(key),
            Some(serde_json::json!({"scope": null})),
        ),
        request(
            Method::POST,
            &format!("/api_key/{id}/rotate"),
            Some(key),
            Some(serde_json::json!({})),
        ),
        request(Method::DELETE, &format!("/api_key/{id}"), Some(key), None),
    ];
    for attempt in attempts {
        let what = format!("{} {}", attempt.method(), attempt.uri());
        let reply = app.send(attempt).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}");
        assert_eq!(reply.error(), "insufficient_scope", "{what}");
    }
    let keys = app
        .fixture
        .gate
        .api_keys_of_user(&bob, Default::default())
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "nothing was created");
    assert_eq!(keys[0].digest, full.key.digest, "nothing was rotated");
    // Listing is not managing; the owner's session manages.
    assert_eq!(
        app.send(get_with("/api_key", Some(key))).await.status,
        StatusCode::OK
    );
    let session = app.session(&bob).await;
    let reply = app
        .send(request(
            Method::POST,
            "/api_key",
            Some(&session),
            Some(serde_json::json!({"name": "second"})),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_gate_built_with_keys_managing_keys_lets_a_key_sent_directly_manage_keys() {
    use scopegate::{store::SledStore, ScopeGate};
    for opted_in in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let users = common::Users::default();
        let bob = users.add("bob", false);
        let mut builder = ScopeGate::builder(SledStore::open(dir.path()).unwrap(), users)
            .without_cache()
            .with_direct_api_keys();
        if opted_in {
            builder = builder.with_keys_managing_keys();
        }
        let gate = builder.build().unwrap();
        let key = gate
            .create_api_key(&bob, NewApiKey::new("full"))
            .await
            .unwrap();
        let as_key = gate.authenticate(key.secret.expose()).await.unwrap();
        assert_eq!(gate.may_manage_keys(&as_key), opted_in);
        let session = gate
            .create_token(scopegate::NewToken::for_user(bob))
            .await
            .unwrap();
        let as_session = gate.authenticate(session.secret.expose()).await.unwrap();
        assert!(gate.may_manage_keys(&as_session));
    }
}
