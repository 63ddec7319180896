//! Who may manage a key, over HTTP: the takeover paths an authorization review
//! found, each closed. A retired secret, a token minted from a key, an
//! administrator, a non-owner probing ids, a route guard, a cross-site form and a
//! token in a URL each try what they must not be able to do.

mod common;

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
    routing::get,
    Router,
};
use common::{
    app::{get_with, request, send, AllSources, Reply, SettingRead, TestApp},
    girder_scopes, Users,
};
use scopegate::{
    extract::guard, store::SledStore, AuthState, CurrentUser, NewToken, RequireAdmin, Scope,
};
use serde_json::{json, Value};

/// Exchanges `key` for a token: the reply, and the token's secret if one came back.
async fn exchange(app: &TestApp, key: &Value) -> (Reply, Option<String>) {
    let reply = app.exchange(json!({ "key": key })).await;
    let token = reply.body["auth_token"]["token"]
        .as_str()
        .map(str::to_owned);
    (reply, token)
}

/// Bob's session and a full-access key of his, and the session of an admin, Alice.
async fn bobs_key_and_an_admin(app: &TestApp) -> (String, String, Value) {
    let bob = app.fixture.user("bob");
    let alice = app.fixture.admin("alice");
    let bob_session = app.session(&bob).await;
    let alice_session = app.session(&alice).await;
    let key = app
        .create_key(&bob_session, json!({ "name": "bob's" }))
        .await;
    (bob_session, alice_session, key)
}

async fn rotate(app: &TestApp, id: &str, credential: &str, grace_seconds: u64) -> Reply {
    app.send(request(
        Method::POST,
        &format!("/api_key/{id}/rotate"),
        Some(credential),
        Some(json!({ "grace_seconds": grace_seconds })),
    ))
    .await
}

fn is_login_refusal(reply: &Reply) -> bool {
    reply.status == StatusCode::FORBIDDEN
        && reply.error() == "insufficient_scope"
        && reply.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("login session"))
}

#[tokio::test]
async fn a_secret_retired_with_grace_cannot_take_its_key_over() {
    let app = TestApp::with_gate(|gate| gate.with_keys_managing_keys());
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let key = app.create_key(&session, json!({ "name": "ci" })).await;
    let id = key["id"].as_str().unwrap();
    let old_secret = key["key"].clone();
    // Bob fears the secret leaked, and rotates with an hour of grace.
    let rotated = rotate(&app, id, &session, 3600).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_secret = rotated.body["key"].clone();

    // The attacker holds only the old secret: it still exchanges (the grace),
    // and the token says which key it came from.
    let (reply, token) = exchange(&app, &old_secret).await;
    assert_eq!(reply.status, StatusCode::OK);
    let token = token.unwrap();
    let current = app.send(get_with("/token/current", Some(&token))).await;
    assert_eq!(current.body["api_key_id"], id);
    // It cannot rotate the key, neither as the token nor as the key itself.
    let as_token = rotate(&app, id, &token, 0).await;
    assert!(is_login_refusal(&as_token), "{:?}", as_token.body);
    let as_key = rotate(&app, id, old_secret.as_str().unwrap(), 0).await;
    assert!(is_login_refusal(&as_key), "{:?}", as_key.body);
    let deactivate = app
        .send(request(
            Method::PUT,
            &format!("/api_key/{id}"),
            Some(old_secret.as_str().unwrap()),
            Some(json!({ "active": false })),
        ))
        .await;
    assert!(is_login_refusal(&deactivate), "{:?}", deactivate.body);

    // Bob's current secret still works, and (the app allowing it) manages its key.
    let (reply, _) = exchange(&app, &new_secret).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let by_current = rotate(&app, id, new_secret.as_str().unwrap(), 0).await;
    assert_eq!(by_current.status, StatusCode::OK, "{:?}", by_current.body);
    // That rotation, without grace, ended the old secret and the token it minted.
    assert_eq!(
        exchange(&app, &old_secret).await.0.status,
        StatusCode::BAD_REQUEST
    );
    let reply = app.send(get_with("/token/current", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_minted_from_a_key_manages_no_keys_and_no_other_session() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let parent = app
        .create_key(
            &session,
            json!({ "name": "short-lived", "token_duration": 0.01 }),
        )
        .await;
    let sibling = app.create_key(&session, json!({ "name": "other" })).await;
    let sibling_id = sibling["id"].as_str().unwrap();
    let (_, token) = exchange(&app, &parent["key"]).await;
    let token = token.unwrap();
    // A full session for everything else: it reads the user's data.
    assert_eq!(
        app.send(get_with("/data", Some(&token))).await.status,
        StatusCode::OK
    );

    let attempts = [
        (
            Method::POST,
            "/api_key".to_owned(),
            Some(json!({ "name": "forever" })),
        ),
        (
            Method::PUT,
            format!("/api_key/{sibling_id}"),
            Some(json!({ "active": false })),
        ),
        (
            Method::POST,
            format!("/api_key/{sibling_id}/rotate"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/api_key/{sibling_id}"), None),
    ];
    for (method, uri, body) in attempts {
        let reply = app
            .send(request(method.clone(), &uri, Some(&token), body))
            .await;
        assert!(is_login_refusal(&reply), "{method} {uri}: {:?}", reply.body);
    }
    // Nor can it end the login session it came from.
    let login_id = app
        .send(get_with("/token/current", Some(&session)))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = app
        .send(request(
            Method::DELETE,
            &format!("/token/{login_id}"),
            Some(&token),
            None,
        ))
        .await;
    assert!(is_login_refusal(&reply), "{:?}", reply.body);
    assert_eq!(
        app.send(get_with("/user", Some(&session))).await.status,
        StatusCode::OK
    );
    // The user's keys are as they were: one key each, none created, the sibling live.
    let listed = app.send(get_with("/api_key", Some(&session))).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
    assert_eq!(
        exchange(&app, &sibling["key"]).await.0.status,
        StatusCode::OK
    );
    // It may still end itself.
    let own_id = app
        .send(get_with("/token/current", Some(&token)))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = app
        .send(request(
            Method::DELETE,
            &format!("/token/{own_id}"),
            Some(&token),
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        app.send(get_with("/data", Some(&token))).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_key_sent_directly_manages_keys_only_if_the_app_allows_and_never_creates_them() {
    for allowed in [false, true] {
        let app = TestApp::with_gate(|gate| match allowed {
            true => gate.with_keys_managing_keys(),
            false => gate,
        });
        let bob = app.fixture.user("bob");
        let session = app.session(&bob).await;
        let key = app
            .create_key(&session, json!({ "name": "automation" }))
            .await;
        let secret = key["key"].as_str().unwrap();
        let scoped = app
            .create_key(
                &session,
                json!({ "name": "reader", "scope": ["core.data.read"] }),
            )
            .await;
        let scoped_id = scoped["id"].as_str().unwrap();

        let create = app
            .send(request(
                Method::POST,
                "/api_key",
                Some(secret),
                Some(json!({ "name": "child" })),
            ))
            .await;
        assert!(is_login_refusal(&create), "{allowed}: {:?}", create.body);
        let update = app
            .send(request(
                Method::PUT,
                &format!("/api_key/{scoped_id}"),
                Some(secret),
                Some(json!({ "name": "renamed" })),
            ))
            .await;
        if allowed {
            assert_eq!(update.status, StatusCode::OK, "{:?}", update.body);
        } else {
            assert!(is_login_refusal(&update), "{:?}", update.body);
        }
        // A scoped key is no full session: it manages nothing either way.
        let by_scoped = rotate(&app, scoped_id, scoped["key"].as_str().unwrap(), 0).await;
        assert_eq!(by_scoped.status, StatusCode::FORBIDDEN, "{allowed}");
    }
}

#[tokio::test]
async fn an_admin_rotating_someone_elses_key_gets_no_secret_and_ends_the_old_one() {
    let app = TestApp::new();
    let (bob_session, alice_session, key) = bobs_key_and_an_admin(&app).await;
    let id = key["id"].as_str().unwrap();

    // A grace would leave Bob's old secret working while someone else holds a new one.
    let with_grace = rotate(&app, id, &alice_session, 3600).await;
    assert_eq!(with_grace.status, StatusCode::BAD_REQUEST);
    assert_eq!(exchange(&app, &key["key"]).await.0.status, StatusCode::OK);

    let rotated = rotate(&app, id, &alice_session, 0).await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    assert!(rotated.body.get("key").is_none(), "{:?}", rotated.body);
    assert_eq!(rotated.body["id"], id);
    // The leaked secret is dead; the owner rotates to use the key again.
    assert_eq!(
        exchange(&app, &key["key"]).await.0.status,
        StatusCode::BAD_REQUEST
    );
    let by_owner = rotate(&app, id, &bob_session, 0).await;
    assert_eq!(by_owner.status, StatusCode::OK);
    assert_eq!(
        exchange(&app, &by_owner.body["key"]).await.0.status,
        StatusCode::OK
    );

    // An app that wants admins to hand keys over says so.
    let app = TestApp::with_gate(|gate| gate.with_rotated_secrets_for_admins());
    let (_, alice_session, key) = bobs_key_and_an_admin(&app).await;
    let rotated = rotate(&app, key["id"].as_str().unwrap(), &alice_session, 60).await;
    assert_eq!(rotated.status, StatusCode::OK);
    assert_eq!(
        exchange(&app, &rotated.body["key"]).await.0.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_admins_deactivation_is_a_lock_only_an_admin_lifts() {
    let app = TestApp::new();
    let (bob_session, alice_session, key) = bobs_key_and_an_admin(&app).await;
    let id = key["id"].as_str().unwrap();
    let uri = format!("/api_key/{id}");
    let (_, token) = exchange(&app, &key["key"]).await;
    let set_active = |credential: &str, active: bool| {
        request(
            Method::PUT,
            &uri,
            Some(credential),
            Some(json!({ "active": active })),
        )
    };
    let reply = app.send(set_active(&alice_session, false)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["locked"], true);
    assert_eq!(reply.body["active"], false);
    // The key's tokens died with it, and its owner cannot bring it back.
    assert_eq!(
        app.send(get_with("/data", Some(&token.unwrap())))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let reply = app.send(set_active(&bob_session, true)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    assert!(reply.body["message"]
        .as_str()
        .unwrap()
        .contains("administrator"));
    assert_eq!(
        exchange(&app, &key["key"]).await.0.status,
        StatusCode::BAD_REQUEST
    );
    let listed = app.send(get_with("/api_key", Some(&bob_session))).await;
    assert_eq!(listed.body[0]["locked"], true, "the owner sees why");
    // Other changes stay the owner's, and leave the lock on.
    let renamed = app
        .send(request(
            Method::PUT,
            &uri,
            Some(&bob_session),
            Some(json!({ "name": "renamed", "active": false })),
        ))
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.body["locked"], true);
    // An administrator lifts it.
    let reply = app.send(set_active(&alice_session, true)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["locked"], false);
    assert_eq!(exchange(&app, &key["key"]).await.0.status, StatusCode::OK);
    // An owner's own deactivation is no lock.
    app.send(set_active(&bob_session, false)).await;
    let reply = app.send(set_active(&bob_session, true)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["locked"], false);
}

/// Status, headers and body of a reply, `date` aside: what a caller can compare.
fn observable(reply: &Reply) -> (StatusCode, Vec<(String, String)>, Value) {
    let headers = reply
        .headers
        .iter()
        .filter(|(name, _)| *name != header::DATE)
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    (reply.status, headers, reply.body.clone())
}

#[tokio::test]
async fn someone_elses_key_or_token_answers_exactly_as_an_unknown_id() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let carol = app.fixture.user("carol");
    let bob_session = app.session(&bob).await;
    let carol_session = app.session(&carol).await;
    // Carol's session is in the cache before the comparisons: her own lookup
    // must not count for either side.
    app.fixture.gate.authenticate(&carol_session).await.unwrap();
    let key = app
        .create_key(&bob_session, json!({ "name": "bob's" }))
        .await;
    let key_id = key["id"].as_str().unwrap();
    let token_id = app
        .send(get_with("/token/current", Some(&bob_session)))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let made_up_key = "0000000000000000000000";
    let made_up_token = "1111111111111111111111";
    let routes = |key: &str, token: &str| {
        [
            (
                Method::PUT,
                format!("/api_key/{key}"),
                Some(json!({ "name": "x" })),
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
    let real = routes(key_id, &token_id);
    let unknown = routes(made_up_key, made_up_token);
    for ((method, uri, body), (_, made_up_uri, made_up_body)) in real.into_iter().zip(unknown) {
        let reads = app.fixture.probe.digest_reads();
        let theirs = app
            .send(request(method.clone(), &uri, Some(&carol_session), body))
            .await;
        let reads_for_theirs = app.fixture.probe.digest_reads() - reads;
        let reads = app.fixture.probe.digest_reads();
        let made_up = app
            .send(request(
                method.clone(),
                &made_up_uri,
                Some(&carol_session),
                made_up_body,
            ))
            .await;
        let reads_for_made_up = app.fixture.probe.digest_reads() - reads;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(observable(&theirs), observable(&made_up), "{method} {uri}");
        assert_eq!(reads_for_theirs, reads_for_made_up, "{method} {uri}");
    }
    // Nothing of Bob's changed.
    assert_eq!(exchange(&app, &key["key"]).await.0.status, StatusCode::OK);
    assert_eq!(
        app.send(get_with("/user", Some(&bob_session))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_route_guard_never_turns_a_scoped_token_into_a_full_session() {
    let app = TestApp::new();
    let alice = app.fixture.admin("alice");
    // The review's mount: the key routes under /admin, behind an admin guard that
    // lets an admin's `core.setting.read` token through.
    let router = Router::new()
        .route(
            "/admin/whoami",
            get(|user: CurrentUser| async move { user.id().as_str().to_owned() }),
        )
        .nest("/admin", scopegate::router::api_key_router())
        .route_layer(guard::<RequireAdmin<SettingRead>>())
        .layer(app.state.layer())
        .with_state(app.state.clone());
    let reader = app
        .scoped(&alice, &[Scope::new("core.setting.read").unwrap()])
        .await;
    let reply = send(
        &router,
        request(
            Method::POST,
            "/admin/api_key",
            Some(&reader),
            Some(json!({ "name": "full access" })),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{:?}", reply.body);
    assert!(reply.challenge().contains("core.user_auth"));
    let reply = send(&router, get_with("/admin/whoami", Some(&reader))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let listed = app
        .send(get_with("/api_key", Some(&app.session(&alice).await)))
        .await;
    assert_eq!(listed.body, json!([]));
    // The admin's login session passes both.
    let session = app.session(&alice).await;
    let reply = send(&router, get_with("/admin/whoami", Some(&session))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[test]
#[should_panic(expected = "would let every live credential through")]
fn a_guard_that_lets_every_credential_through_is_refused_when_the_router_is_built() {
    let _ = guard::<scopegate::RequireScopeStrict<()>>();
}

#[tokio::test]
async fn a_cross_site_form_cannot_rotate_a_key_with_the_token_cookie() {
    let AllSources {
        router,
        state,
        bob,
        session,
        ..
    } = AllSources::new().await;
    let cookie = format!("token={session}");
    let key = state
        .gate()
        .create_api_key(&bob, scopegate::NewApiKey::new("k"))
        .await
        .unwrap();
    let uri = format!("/api_key/{}/rotate", key.key.id);
    // What an HTML form with no fields sends, and what `fetch` sends without a body.
    let form = Request::post(&uri)
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::empty())
        .unwrap();
    let bare = Request::post(&uri)
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let delete = Request::delete(format!("/api_key/{}", key.key.id))
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    for forged in [form, bare, delete] {
        let what = format!("{} {:?}", forged.method(), forged.headers());
        let reply = send(&router, forged).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}");
        assert!(reply.body["message"]
            .as_str()
            .unwrap()
            .contains("Content-Type"));
    }
    // The key was not rotated: its secret still exchanges.
    let exchanged = state
        .gate()
        .exchange_api_key(key.secret.expose(), scopegate::TokenRequest::new())
        .await;
    assert!(exchanged.is_ok());
    // A script of the app's own origin sends JSON, and rotates.
    let json = Request::post(&uri)
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, json).await.status, StatusCode::OK);
    // An empty form is refused with a bearer header as well: an empty body is `{}`
    // only when nothing claims it is something else.
    let bearer = format!("Bearer {session}");
    let form = Request::post(&uri)
        .header(header::AUTHORIZATION, &bearer)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, form).await.status, StatusCode::BAD_REQUEST);
    let bare = Request::post(&uri)
        .header(header::AUTHORIZATION, &bearer)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, bare).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_in_the_url_is_refused_on_key_routes_and_on_state_changing_requests() {
    let AllSources {
        router, session, ..
    } = AllSources::new().await;
    let token = session.as_str();
    // A link that cannot send headers may read: the app opted in for that.
    let reply = send(&router, get_with(&format!("/data?token={token}"), None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    // Never on a method that may change state, on any route.
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let forged = Request::builder()
            .method(method.clone())
            .uri(format!("/anything?token={token}"))
            .body(Body::empty())
            .unwrap();
        let reply = send(&router, forged).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method}");
        assert_eq!(reply.error(), "invalid_request", "{method}");
    }
    // Never on the key and token routes, reads included.
    for (method, uri) in [
        (Method::GET, "/api_key"),
        (Method::GET, "/token"),
        (Method::GET, "/token/current"),
        (Method::DELETE, "/token/session"),
    ] {
        let reply = send(
            &router,
            Request::builder()
                .method(method.clone())
                .uri(format!("{uri}?token={token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {uri}");
    }
    // The session survived the attempt to end it from a URL.
    let reply = send(&router, get_with("/user", Some(token))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_with_more_than_a_page_of_keys_and_tokens_manages_the_last_ones() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    // One more than a listing page (1,000) of each, made concurrently.
    let mut made = tokio::task::JoinSet::new();
    for n in 0..1_000 {
        let (gate, bob) = (app.fixture.gate.clone(), bob.clone());
        made.spawn(async move {
            let name = scopegate::NewApiKey::new(format!("k{n}"));
            gate.create_api_key(&bob, name).await.unwrap();
            gate.create_token(NewToken::for_user(bob)).await.unwrap();
        });
    }
    while let Some(done) = made.join_next().await {
        done.unwrap();
    }
    app.fixture.clock.advance(chrono::TimeDelta::seconds(1));
    let last_key = app.create_key(&session, json!({ "name": "newest" })).await;
    let last_token = app.session(&bob).await;
    let last_token_id = app
        .send(get_with("/token/current", Some(&last_token)))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = app
        .send(request(
            Method::PUT,
            &format!("/api_key/{}", last_key["id"].as_str().unwrap()),
            Some(&session),
            Some(json!({ "name": "found past the first page" })),
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let reply = app
        .send(request(
            Method::DELETE,
            &format!("/token/{last_token_id}"),
            Some(&session),
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        app.send(get_with("/user", Some(&last_token))).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_reactivation_racing_an_admins_lock_leaves_the_key_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, parks) = common::parking::parking(SledStore::open(dir.path()).unwrap());
    let users = Users::default();
    let bob = users.add("bob", false);
    let alice = users.add("alice", true);
    // No cache and no background `last_use` writes: every store call is the
    // request's own, in a known order.
    let gate = scopegate::ScopeGate::builder(store, users)
        .without_cache()
        .with_registry(girder_scopes())
        .without_last_use()
        .build()
        .unwrap();
    let state = AuthState::new(gate.clone());
    let router = common::app::routes(state);
    let bob_session = gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    let alice_session = gate.create_token(NewToken::for_user(alice)).await.unwrap();
    let key = gate
        .create_api_key(&bob, scopegate::NewApiKey::new("k").active(false))
        .await
        .unwrap();
    let uri = format!("/api_key/{}", key.key.id);
    let put = |session: &str, active: bool| {
        request(
            Method::PUT,
            &uri,
            Some(session),
            Some(json!({ "active": active })),
        )
    };
    // Bob's reactivation reads the key unlocked (authentication, his own keys,
    // the key: three calls, park points 0 to 5) and is held before its write.
    let reactivation = send(&router, put(bob_session.secret.expose(), true));
    let reply = parks
        .pause_at(6, reactivation, || async {
            let lock = send(&router, put(alice_session.secret.expose(), false)).await;
            assert_eq!(lock.body["locked"], true, "{:?}", lock.body);
        })
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let stored = gate.api_key(&key.key.id).await.unwrap().unwrap();
    assert!(stored.locked && !stored.active, "{stored:?}");
    let exchanged = gate
        .exchange_api_key(key.secret.expose(), scopegate::TokenRequest::new())
        .await;
    assert!(matches!(exchanged, Err(scopegate::Error::InvalidGrant)));
}
