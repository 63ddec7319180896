//! What the layer tells a tracing subscriber, captured at TRACE: one span per
//! request naming the outcome and the ids, and never a secret, a digest or an
//! `Authorization` value, whatever the request carried.

mod common;

use axum::http::{header, Method, Request, StatusCode};
use common::{
    app::{get_with, request, TestApp},
    captured::Captured,
};
use scopegate::{
    secret::{SecretCodec, SecretKind},
    NewApiKey,
};
use serde_json::json;

/// Neither `secret`, nor its last 20 characters, nor its digest's short form
/// (what a digest's `Debug` prints) is in `log`.
fn assert_absent(log: &str, secret: &str) {
    assert!(!log.contains(secret), "a secret reached the log");
    let body = &secret[secret.len() - 20..];
    assert!(!log.contains(body), "part of a secret reached the log");
    let codec = SecretCodec::default();
    let digest = [SecretKind::Token, SecretKind::ApiKey]
        .into_iter()
        .find_map(|kind| codec.parse(kind, secret).ok())
        .unwrap()
        .to_hex();
    assert!(!log.contains(&digest[..12]), "a digest reached the log");
}

#[tokio::test]
async fn traces_name_outcomes_and_ids_but_never_a_secret_digest_or_authorization_value() {
    let (captured, _guard) = Captured::start();

    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let session_id = app
        .fixture
        .gate
        .authenticate(&session)
        .await
        .unwrap()
        .token_id()
        .expect("a token")
        .clone();
    let key = app.fixture.key(&bob, NewApiKey::new("k")).await;
    let revoked = app.session(&bob).await;
    let revoked_id = app
        .fixture
        .gate
        .authenticate(&revoked)
        .await
        .unwrap()
        .token_id()
        .expect("a token")
        .clone();
    app.fixture.gate.revoke_token(&revoked_id).await.unwrap();

    let created = app
        .send(request(
            Method::POST,
            "/api_key",
            Some(&session),
            Some(json!({"name": "k2"})),
        ))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let created_key = created.body["key"].as_str().unwrap().to_owned();
    let exchanged = app
        .send(request(
            Method::POST,
            "/api_key/token",
            None,
            Some(json!({"key": created_key})),
        ))
        .await;
    let minted = exchanged.body["auth_token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (token, status) in [
        (session.as_str(), StatusCode::OK),
        (key.secret.expose(), StatusCode::UNAUTHORIZED),
        (revoked.as_str(), StatusCode::UNAUTHORIZED),
        (minted.as_str(), StatusCode::OK),
    ] {
        assert_eq!(
            app.send(get_with("/user", Some(token))).await.status,
            status
        );
    }
    let basic = Request::builder()
        .uri("/user")
        .header(header::AUTHORIZATION, "Basic Ym9iOmJvYi1wYXNz")
        .body(axum::body::Body::empty())
        .unwrap();
    app.send(basic).await;
    let malformed = Request::builder()
        .uri("/user")
        .header(header::AUTHORIZATION, format!("Bearer  {session}"))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.send(malformed).await.status, StatusCode::BAD_REQUEST);

    let log = captured.text();
    // The capture works, and says what happened.
    assert!(log.contains("outcome=\"authenticated\""), "{log}");
    assert!(
        log.contains(&format!("token_id=\"{}\"", session_id.as_str())),
        "{log}"
    );
    assert!(log.contains("reason=ApiKey"), "{log}");
    assert!(log.contains("reason=Unknown"), "{log}");
    assert!(log.contains("user_id=\"bob\""), "{log}");
    for secret in [
        session.as_str(),
        key.secret.expose(),
        revoked.as_str(),
        &created_key,
        &minted,
    ] {
        assert_absent(&log, secret);
    }
    assert!(
        !log.contains("Ym9iOmJvYi1wYXNz"),
        "a Basic credential reached the log"
    );
    assert!(
        !log.to_lowercase().contains("bearer sg_"),
        "an Authorization value reached the log"
    );
}

#[tokio::test]
async fn a_request_sent_with_an_api_key_is_traced_as_one_by_its_id_never_its_secret() {
    let (captured, _guard) = Captured::start();

    let app = TestApp::with_direct_api_keys();
    let bob = app.fixture.user("bob");
    let key = app.fixture.key(&bob, NewApiKey::new("k")).await;
    let secret = key.secret.expose();
    assert_eq!(
        app.send(get_with("/user", Some(secret))).await.status,
        StatusCode::OK
    );
    app.fixture.gate.delete_api_key(&key.key.id).await.unwrap();
    let refused = app.send(get_with("/user", Some(secret))).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let log = captured.text();
    assert!(log.contains("credential=\"api_key\""), "{log}");
    assert!(
        log.contains(&format!("api_key_id=\"{}\"", key.key.id.as_str())),
        "{log}"
    );
    assert!(log.contains("reason=Unknown"), "{log}");
    assert!(!log.contains("token_id="), "no token was involved: {log}");
    assert_absent(&log, secret);
}

/// An app that logs what it handles with `{:?}` prints no secret: every public
/// type that carries one redacts it.
#[tokio::test]
async fn every_public_type_carrying_a_secret_redacts_it_in_debug() {
    use scopegate::{
        router::AuthTokenResponse, store::SledStore, AuthState, ScopeGate, TokenRequest,
    };
    let app = TestApp::new();
    let gate = &app.fixture.gate;
    let bob = app.fixture.user("bob");
    let key = gate
        .create_api_key(&bob, NewApiKey::new("k"))
        .await
        .unwrap();
    let token = gate
        .exchange_api_key(key.secret.expose(), TokenRequest::default())
        .await
        .unwrap();
    let (key_secret, token_secret) = (key.secret.expose(), token.secret.expose());
    let pepper = "a pepper of at least sixteen bytes";
    let dir = tempfile::tempdir().unwrap();
    let peppered = AuthState::builder(
        ScopeGate::builder(
            SledStore::open(dir.path()).unwrap(),
            common::Users::default(),
        )
        .with_pepper(pepper),
    )
    .build()
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let peppered_gate = ScopeGate::builder(
        SledStore::open(dir.path()).unwrap(),
        common::Users::default(),
    )
    .with_pepper(pepper);
    let printed = [
        format!("{key:?}"),
        format!("{:?}", key.secret),
        format!("{token:?}"),
        format!("{:?}", token.secret),
        format!("{:?}", AuthTokenResponse::new(bob.clone(), token.clone())),
        format!("{peppered:?}"),
        format!("{peppered_gate:?}"),
    ];
    for debug in &printed {
        for secret in [key_secret, token_secret, pepper] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }
}
