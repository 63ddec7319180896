//! `scopegate::router()` over HTTP semantics: the API-key lifecycle, the token
//! routes, Girder's ownership rules, and clear 4xx answers to bad input.

mod common;

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
};
use chrono::{DateTime, TimeDelta, Utc};
use common::app::{get_with, request, send, TestApp};
use scopegate::{AnonymousSessions, UserId};
use serde_json::{json, Value};

fn timestamp(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_new_key_shows_its_secret_once_and_listings_never_do() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let reply = app
        .send(request(
            Method::POST,
            "/api_key",
            Some(&session),
            Some(json!({ "name": "  reports  ", "scope": ["core.data.read"], "token_duration": 0.5 })),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let secret = reply.body["key"].as_str().unwrap();
    assert!(secret.starts_with("sg_key_"));
    assert_eq!(reply.body["name"], "reports");
    assert_eq!(reply.body["scope"], json!(["core.data.read"]));
    assert_eq!(reply.body["user_id"], "bob");
    assert!(secret.starts_with(reply.body["start"].as_str().unwrap()));
    assert!(reply.body.get("digest").is_none());

    let listed = app.send(get_with("/api_key", Some(&session))).await;
    assert_eq!(listed.status, StatusCode::OK);
    let keys = listed.body.as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].get("key").is_none());
    assert!(keys[0].get("digest").is_none());
    assert!(!listed.body.to_string().contains(secret));
}

#[tokio::test]
async fn exchange_returns_the_user_and_a_token_capped_at_the_keys_duration() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app
        .create_key(
            &session,
            json!({ "name": "k", "scope": ["core.data.read"], "token_duration": 0.5 }),
        )
        .await;
    let reply = app
        .exchange(json!({ "key": key["key"], "duration": 30 }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(reply.body["user"], json!({ "id": "bob" }));
    let token = &reply.body["auth_token"];
    assert_eq!(token["scope"], json!(["core.data.read"]));
    let lifetime = timestamp(&token["expires"]) - app.fixture.clock.now();
    assert!(lifetime <= TimeDelta::hours(12), "{lifetime}");
    assert!(lifetime > TimeDelta::hours(11));
    let secret = token["token"].as_str().unwrap();
    assert_eq!(
        app.send(get_with("/data", Some(secret))).await.status,
        StatusCode::OK
    );
    // last_use is stamped.
    let listed = app.send(get_with("/api_key", Some(&session))).await;
    assert!(listed.body[0]["last_use"].is_string());
}

#[tokio::test]
async fn exchange_narrows_scopes_but_never_widens_them() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app
        .create_key(
            &session,
            json!({ "name": "k", "scope": ["core.data.read", "core.data.write"] }),
        )
        .await;
    let reply = app
        .exchange(json!({ "key": key["key"], "scope": ["core.data.read"] }))
        .await;
    assert_eq!(reply.body["auth_token"]["scope"], json!(["core.data.read"]));
    let reply = app
        .exchange(json!({ "key": key["key"], "scope": ["core.data.own"] }))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_request");
}

#[tokio::test]
async fn a_key_in_the_url_is_refused_even_with_a_valid_body() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app.create_key(&session, json!({ "name": "k" })).await;
    let secret = key["key"].as_str().unwrap();
    let reply = app
        .send(request(
            Method::POST,
            &format!("/api_key/token?key={secret}"),
            None,
            Some(json!({ "key": secret })),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_request");
    assert!(reply.body["message"].as_str().unwrap().contains("URL"));
}

#[tokio::test]
async fn bad_keys_at_exchange_are_400_invalid_grant() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app
        .create_key(&session, json!({ "name": "k", "active": false }))
        .await;
    for bad in [json!("nonsense"), json!("sg_key_"), key["key"].clone()] {
        let reply = app.exchange(json!({ "key": bad })).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(reply.error(), "invalid_grant");
        assert!(reply.headers.get(header::WWW_AUTHENTICATE).is_none());
    }
}

#[tokio::test]
async fn only_admins_list_other_users_keys() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let alice = app.fixture.admin("alice");
    let bob_session = app.session(&bob).await;
    let alice_session = app.session(&alice).await;
    app.create_key(&bob_session, json!({ "name": "bob's" }))
        .await;
    app.create_key(&alice_session, json!({ "name": "alice's" }))
        .await;
    let reply = app
        .send(get_with("/api_key?user_id=alice", Some(&bob_session)))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error(), "insufficient_scope");
    let reply = app
        .send(get_with("/api_key?user_id=bob", Some(&alice_session)))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body[0]["name"], "bob's");
    let reply = app.send(get_with("/api_key", Some(&alice_session))).await;
    assert_eq!(reply.body.as_array().unwrap().len(), 1);
    assert_eq!(reply.body[0]["name"], "alice's");
}

#[tokio::test]
async fn only_the_owner_or_an_admin_may_update_rotate_or_delete_a_key_others_get_404() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let carol = app.fixture.user("carol");
    let alice = app.fixture.admin("alice");
    let bob_session = app.session(&bob).await;
    let carol_session = app.session(&carol).await;
    let alice_session = app.session(&alice).await;
    let key = app
        .create_key(&bob_session, json!({ "name": "bob's" }))
        .await;
    let id = key["id"].as_str().unwrap();
    let attempts = [
        (
            Method::PUT,
            format!("/api_key/{id}"),
            Some(json!({ "name": "mine now" })),
        ),
        (Method::POST, format!("/api_key/{id}/rotate"), None),
        (Method::DELETE, format!("/api_key/{id}"), None),
    ];
    for (method, uri, body) in &attempts {
        let reply = app
            .send(request(
                method.clone(),
                uri,
                Some(&carol_session),
                body.clone(),
            ))
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(reply.error(), "not_found");
    }
    // Nothing changed: bob's key still works under its name.
    let listed = app.send(get_with("/api_key", Some(&bob_session))).await;
    assert_eq!(listed.body[0]["name"], "bob's");
    assert_eq!(
        app.exchange(json!({ "key": key["key"] })).await.status,
        StatusCode::OK
    );
    for (method, uri, body) in attempts {
        let reply = app
            .send(request(method.clone(), &uri, Some(&alice_session), body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{method} {uri}: {:?}",
            reply.body
        );
    }
}

#[tokio::test]
async fn updates_are_partial_and_a_null_scope_means_full_access() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app
        .create_key(
            &session,
            json!({ "name": "k", "scope": ["core.data.read"], "token_duration": 2 }),
        )
        .await;
    let uri = format!("/api_key/{}", key["id"].as_str().unwrap());
    let reply = app
        .send(request(
            Method::PUT,
            &uri,
            Some(&session),
            Some(json!({ "name": "renamed" })),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["name"], "renamed");
    assert_eq!(reply.body["scope"], json!(["core.data.read"]));
    assert_eq!(reply.body["token_duration"], json!(2.0));
    assert!(reply.body.get("key").is_none());
    let reply = app
        .send(request(
            Method::PUT,
            &uri,
            Some(&session),
            Some(json!({ "scope": null, "token_duration": null })),
        ))
        .await;
    assert_eq!(reply.body["scope"], Value::Null);
    assert_eq!(reply.body["token_duration"], Value::Null);
    assert_eq!(reply.body["name"], "renamed");
    let token = app.exchange(json!({ "key": key["key"] })).await;
    assert_eq!(token.body["auth_token"]["scope"], json!(["core.user_auth"]));
}

#[tokio::test]
async fn deactivating_or_deleting_a_key_revokes_its_tokens_at_once() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    for deactivate in [true, false] {
        let key = app
            .create_key(
                &session,
                json!({ "name": "k", "scope": ["core.data.read"] }),
            )
            .await;
        let uri = format!("/api_key/{}", key["id"].as_str().unwrap());
        let token = app.exchange(json!({ "key": key["key"] })).await;
        let token = token.body["auth_token"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            app.send(get_with("/data", Some(&token))).await.status,
            StatusCode::OK
        );
        let reply = match deactivate {
            true => {
                app.send(request(
                    Method::PUT,
                    &uri,
                    Some(&session),
                    Some(json!({ "active": false })),
                ))
                .await
            }
            false => {
                app.send(request(Method::DELETE, &uri, Some(&session), None))
                    .await
            }
        };
        assert_eq!(reply.status, StatusCode::OK);
        let reply = app.send(get_with("/data", Some(&token))).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "deactivate: {deactivate}"
        );
        assert_eq!(
            app.exchange(json!({ "key": key["key"] })).await.error(),
            "invalid_grant"
        );
    }
}

#[tokio::test]
async fn rotation_issues_a_new_secret_and_the_old_one_works_only_during_the_grace() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app.create_key(&session, json!({ "name": "k" })).await;
    let uri = format!("/api_key/{}/rotate", key["id"].as_str().unwrap());
    let reply = app
        .send(request(
            Method::POST,
            &uri,
            Some(&session),
            Some(json!({ "grace_seconds": 60 })),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let new_secret = reply.body["key"].clone();
    assert_ne!(new_secret, key["key"]);
    assert!(reply.body["previous_secret_valid_until"].is_string());
    assert_eq!(
        app.exchange(json!({ "key": key["key"] })).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.exchange(json!({ "key": new_secret })).await.status,
        StatusCode::OK
    );
    app.fixture.clock.advance(TimeDelta::seconds(61));
    assert_eq!(
        app.exchange(json!({ "key": key["key"] })).await.error(),
        "invalid_grant"
    );
    // Without a body: no grace at all.
    let reply = app
        .send(request(Method::POST, &uri, Some(&session), None))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        app.exchange(json!({ "key": new_secret })).await.error(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn get_session_without_a_token_creates_a_new_anonymous_token_each_time() {
    let app = TestApp::with_anonymous_sessions(AnonymousSessions::default());
    let first = app.send(get_with("/token/session", None)).await;
    let second = app.send(get_with("/token/session", None)).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(first.headers[header::PRAGMA], "no-cache");
    let (a, b) = (
        first.body["token"].as_str().unwrap(),
        second.body["token"].as_str().unwrap(),
    );
    assert_ne!(a, b);
    assert!(first.body["expires"].is_string());
    // With a token, the session is that token, and its secret is not echoed.
    let reply = app.send(get_with("/token/session", Some(a))).await;
    assert_eq!(reply.body["id"], first.body["id"]);
    assert!(reply.body.get("token").is_none());
    assert_eq!(reply.body["user_id"], Value::Null);
}

#[tokio::test]
async fn deleting_the_session_twice_is_401_the_second_time() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let delete = || request(Method::DELETE, "/token/session", Some(&session), None);
    assert_eq!(app.send(delete()).await.status, StatusCode::OK);
    let reply = app.send(delete()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_token");
    let reply = app
        .send(request(Method::DELETE, "/token/session", None, None))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn current_token_is_null_without_one_and_never_shows_a_secret() {
    let app = TestApp::new();
    let reply = app.send(get_with("/token/current", None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, Value::Null);
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let reply = app.send(get_with("/token/current", Some(&session))).await;
    assert_eq!(reply.body["user_id"], "bob");
    assert_eq!(reply.body["scope"], json!(["core.user_auth"]));
    assert!(!reply.body.to_string().contains(&session));
}

#[tokio::test]
async fn users_list_and_revoke_their_own_tokens_only() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let carol = app.fixture.user("carol");
    let bob_session = app.session(&bob).await;
    let bob_other = app.session(&bob).await;
    let carol_session = app.session(&carol).await;
    let listed = app.send(get_with("/token", Some(&bob_session))).await;
    let ids: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    let other_id = app
        .fixture
        .gate
        .authenticate(&bob_other)
        .await
        .unwrap()
        .token_id()
        .expect("a token")
        .clone();
    let reply = app
        .send(request(
            Method::DELETE,
            &format!("/token/{other_id}"),
            Some(&carol_session),
            None,
        ))
        .await;
    // Someone else's token is answered as if it did not exist.
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "not_found");
    assert_eq!(
        app.send(get_with("/data", Some(&bob_other))).await.status,
        StatusCode::OK
    );
    let reply = app
        .send(request(
            Method::DELETE,
            &format!("/token/{other_id}"),
            Some(&bob_session),
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        app.send(get_with("/data", Some(&bob_other))).await.status,
        StatusCode::UNAUTHORIZED
    );
    let reply = app
        .send(request(
            Method::DELETE,
            "/token/no-such-token",
            Some(&bob_session),
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error(), "not_found");
}

#[tokio::test]
async fn the_scope_catalogue_lists_custom_and_admin_scopes() {
    let app = TestApp::new();
    let reply = app.send(get_with("/token/scopes", None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&reply.body["custom"]),
        [
            "core.user_info.read",
            "core.data.read",
            "core.data.write",
            "core.data.own"
        ]
    );
    assert_eq!(
        ids(&reply.body["admin_custom"]),
        ["core.setting.read", "core.plugins.read"]
    );
    assert!(reply.body["custom"][0]["name"].is_string());
    assert!(reply.body["custom"][0]["description"].is_string());
}

fn raw(
    method: Method,
    uri: &str,
    token: &str,
    content_type: Option<&str>,
    body: &str,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn bad_input_gets_a_clear_400_and_changes_nothing() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let json = Some("application/json");
    let cases = [
        ("{\"name\": ", json, "Invalid JSON"),
        (
            "{\"name\": \"k\", \"colour\": \"red\"}",
            json,
            "unknown field",
        ),
        ("{\"name\": \"k\"}", Some("text/plain"), "Content-Type"),
        ("{\"name\": \"k\"}", None, "Content-Type"),
        ("{}", json, "missing field"),
        ("{\"name\": \"   \"}", json, "name"),
        (
            "{\"name\": \"k\", \"token_duration\": -1}",
            json,
            "token_duration",
        ),
        (
            "{\"name\": \"k\", \"token_duration\": 0}",
            json,
            "token_duration",
        ),
        (
            "{\"name\": \"k\", \"token_duration\": 1e300}",
            json,
            "token_duration",
        ),
        (
            "{\"name\": \"k\", \"token_duration\": NaN}",
            json,
            "Invalid JSON",
        ),
        (
            "{\"name\": \"k\", \"token_duration\": \"1\"}",
            json,
            "invalid type",
        ),
        ("{\"name\": \"k\", \"scope\": []}", json, "scope"),
        (
            "{\"name\": \"k\", \"scope\": [\"no.such.scope\"]}",
            json,
            "Invalid scopes: no.such.scope.",
        ),
        (
            "{\"name\": \"k\", \"expires_in_days\": -3}",
            json,
            "expires_in_days",
        ),
    ];
    for (body, content_type, expected) in cases {
        let reply = app
            .send(raw(Method::POST, "/api_key", &session, content_type, body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            reply.body
        );
        assert_eq!(reply.error(), "invalid_request", "{body}");
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let listed = app.send(get_with("/api_key", Some(&session))).await;
    assert_eq!(listed.body, json!([]), "no bad request created a key");
}

#[tokio::test]
async fn bad_durations_limits_and_ids_on_the_other_routes_are_clear_4xx() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app.create_key(&session, json!({ "name": "k" })).await;
    let id = key["id"].as_str().unwrap();
    let secret = &key["key"];
    for duration in [json!(-1), json!(0), json!(3651), json!(1e308)] {
        let reply = app
            .exchange(json!({ "key": secret, "duration": duration }))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{duration}");
        assert_eq!(reply.error(), "invalid_request");
    }
    assert_eq!(app.exchange(json!({})).await.error(), "invalid_request");
    let bad_rotations = [
        json!({ "grace_seconds": -5 }),
        json!({ "grace_seconds": 31 * 86_400 }),
        json!({ "grace": 5 }),
    ];
    for body in bad_rotations {
        let reply = app
            .send(request(
                Method::POST,
                &format!("/api_key/{id}/rotate"),
                Some(&session),
                Some(body.clone()),
            ))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
    }
    for uri in [
        "/api_key?limit=0",
        "/api_key?limit=5000",
        "/api_key?limit=-1",
        "/api_key?offset=x",
        "/token?limit=0",
    ] {
        let reply = app.send(get_with(uri, Some(&session))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(reply.error(), "invalid_request", "{uri}");
    }
    for (method, uri) in [
        (Method::PUT, "/api_key/unknown"),
        (Method::DELETE, "/api_key/unknown"),
        (Method::POST, "/api_key/unknown/rotate"),
    ] {
        let body = (method == Method::PUT).then(|| json!({ "name": "x" }));
        let reply = app.send(request(method, uri, Some(&session), body)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(reply.error(), "not_found");
    }
    let reply = app
        .send(request(
            Method::PUT,
            &format!("/api_key/{id}"),
            Some(&session),
            Some(json!({ "name": "x", "owner": "carol" })),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body["message"]
        .as_str()
        .unwrap()
        .contains("unknown field"));
    // The key survived all of it.
    assert_eq!(
        app.exchange(json!({ "key": secret })).await.status,
        StatusCode::OK
    );
    let _: UserId = bob;
}

#[tokio::test]
async fn anonymous_sessions_are_refused_unless_the_app_turns_them_on() {
    let app = TestApp::new();
    let reply = app.send(get_with("/token/session", None)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    assert!(reply.body.get("token").is_none());
    // A caller with a token still gets their session.
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let reply = app.send(get_with("/token/session", Some(&session))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn anonymous_sessions_past_their_bound_get_429_with_retry_after() {
    let sessions = AnonymousSessions::default()
        .with_lifetime(std::time::Duration::from_secs(600))
        .with_max_live(3);
    let app = TestApp::with_anonymous_sessions(sessions);
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let reply = app.send(get_with("/token/session", None)).await;
        assert_eq!(reply.status, StatusCode::OK);
        let expires = timestamp(&reply.body["expires"]);
        let lifetime = expires - Utc::now();
        assert!(lifetime <= TimeDelta::seconds(600) && lifetime > TimeDelta::seconds(590));
        tokens.push(reply.body["token"].as_str().unwrap().to_owned());
    }
    for _ in 0..20 {
        let reply = app.send(get_with("/token/session", None)).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reply.error(), "too_many_requests");
        let retry: u64 = reply.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=600).contains(&retry), "Retry-After {retry}");
    }
    // The refused calls stored nothing, and the admitted tokens still work.
    for token in &tokens {
        let reply = app.send(get_with("/token/current", Some(token))).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn json_bodies_that_are_not_objects_are_refused_and_change_nothing() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app
        .create_key(
            &session,
            json!({ "name": "k", "scope": ["core.data.read"] }),
        )
        .await;
    let id = key["id"].as_str().unwrap();
    let cases = [
        (Method::POST, "/api_key".to_owned(), json!(["positional"])),
        (Method::POST, "/api_key".to_owned(), json!("k")),
        (Method::PUT, format!("/api_key/{id}"), json!([])),
        (
            Method::PUT,
            format!("/api_key/{id}"),
            json!(["renamed", null]),
        ),
        (
            Method::POST,
            "/api_key/token".to_owned(),
            json!([key["key"]]),
        ),
    ];
    for (method, uri, body) in cases {
        let reply = app
            .send(request(method, &uri, Some(&session), Some(body.clone())))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri} {body}");
        assert_eq!(reply.error(), "invalid_request");
        assert!(reply.body["message"].as_str().unwrap().contains("object"));
    }
    let listed = app.send(get_with("/api_key", Some(&session))).await;
    let keys = listed.body.as_array().unwrap();
    assert_eq!(keys.len(), 1, "no key was created");
    assert_eq!(keys[0]["name"], "k");
    assert_eq!(
        keys[0]["scope"],
        json!(["core.data.read"]),
        "the key is unchanged"
    );
}

#[tokio::test]
async fn durations_shorter_than_one_second_are_refused() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app.create_key(&session, json!({ "name": "k" })).await;
    for duration in [json!(1e-9), json!(1e-6), json!(0.00001)] {
        let reply = app
            .exchange(json!({ "key": key["key"], "duration": duration }))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{duration}");
        assert!(reply.body["message"]
            .as_str()
            .unwrap()
            .contains("one second"));
        let body = json!({ "name": "short", "token_duration": duration });
        let reply = app
            .send(request(
                Method::POST,
                "/api_key",
                Some(&session),
                Some(body),
            ))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{duration}");
    }
    // One second is the shortest accepted.
    let one_second = 1.0 / 86_400.0;
    let reply = app
        .exchange(json!({ "key": key["key"], "duration": one_second }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}

#[tokio::test]
async fn shortening_a_keys_expiry_caps_its_tokens_at_once() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app
        .create_key(&session, json!({ "name": "k", "token_duration": 1.0 }))
        .await;
    let id = key["id"].as_str().unwrap();
    let minted = app.exchange(json!({ "key": key["key"] })).await;
    let token = minted.body["auth_token"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Cached by a first use.
    let reply = app.send(get_with("/token/current", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = json!({ "expires_in_days": 0.25 });
    let updated = app
        .send(request(
            Method::PUT,
            &format!("/api_key/{id}"),
            Some(&session),
            Some(body),
        ))
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    let key_expires = timestamp(&updated.body["expires"]);
    let current = app.send(get_with("/token/current", Some(&token))).await;
    assert_eq!(timestamp(&current.body["expires"]), key_expires);
    // Past the key's new expiry, with no sweeper: the token is refused.
    app.fixture.clock.advance(TimeDelta::hours(7));
    let reply = app.send(get_with("/data", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_token");
}

#[tokio::test]
async fn an_app_can_mount_only_the_key_routes_under_its_own_prefix() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let router = axum::Router::new()
        .nest("/api/v1", scopegate::router::api_key_router())
        .layer(app.state.layer())
        .with_state(app.state.clone());
    let created = send(
        &router,
        request(
            Method::POST,
            "/api/v1/api_key",
            Some(&session),
            Some(json!({"name": "k"})),
        ),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let exchanged = send(
        &router,
        request(
            Method::POST,
            "/api/v1/api_key/token",
            None,
            Some(json!({"key": created.body["key"]})),
        ),
    )
    .await;
    assert_eq!(exchanged.status, StatusCode::OK);
    for (method, path) in [
        (Method::GET, "/api/v1/token/current"),
        (Method::GET, "/api/v1/token/session"),
        (Method::POST, "/api_key"),
    ] {
        let reply = send(&router, request(method, path, Some(&session), None)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let tokens_only = axum::Router::new()
        .nest(
            "/auth",
            scopegate::router::token_router().merge(scopegate::router::session_router()),
        )
        .layer(app.state.layer())
        .with_state(app.state.clone());
    for path in [
        "/auth/token/current",
        "/auth/token/session",
        "/auth/token/scopes",
    ] {
        let reply = send(
            &tokens_only,
            request(Method::GET, path, Some(&session), None),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
    }
    let reply = send(
        &tokens_only,
        request(Method::GET, "/auth/api_key", Some(&session), None),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_exchange_past_the_keys_most_live_tokens_is_429_and_a_revocation_makes_room() {
    let app = TestApp::with_gate(|gate| gate.with_max_tokens_per_key(2));
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app.create_key(&session, json!({ "name": "ci" })).await;
    let body = json!({ "key": key["key"] });
    let first = app.exchange(body.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(app.exchange(body.clone()).await.status, StatusCode::OK);
    let refused = app.exchange(body.clone()).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error(), "too_many_requests");
    let token = first.body["auth_token"]["token"].as_str().unwrap();
    let logout = app
        .send(request(Method::DELETE, "/token/session", Some(token), None))
        .await;
    assert_eq!(logout.status, StatusCode::OK);
    assert_eq!(app.exchange(body).await.status, StatusCode::OK);
}
