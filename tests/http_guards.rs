//! The layer and the guards over HTTP semantics (`Router` + `oneshot`): Girder's
//! access rules, RFC 6750 errors, malformed credentials, and failing closed.

mod common;

use axum::{
    body::Body,
    http::{header, Method, Request, StatusCode},
    routing::get,
    Router,
};
use common::{
    app::{
        app_with_all_sources, get_with, request, send, AllSources, TestApp, DATA_READ, DATA_WRITE,
        SETTING_READ,
    },
    girder_scopes, Users,
};
use scopegate::{
    rejection::{AuthRejection, ErrorCode},
    store::SledStore,
    AuthState, NewToken, Scope, ScopeGate,
};
use serde_json::json;

#[tokio::test]
async fn anonymous_request_on_a_user_route_is_401_with_a_bare_challenge() {
    let app = TestApp::new();
    let reply = app.send(get_with("/user", None)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.challenge(), "Bearer realm=\"scopegate\"");
    assert_eq!(reply.error(), "unauthorized");
    assert!(reply.body["message"].as_str().unwrap().contains("Bearer"));
}

#[tokio::test]
async fn public_routes_work_without_credentials() {
    let app = TestApp::new();
    let reply = app.send(get_with("/public", None)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({ "user": null }));
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    let reply = app.send(get_with("/public", Some(&token))).await;
    assert_eq!(reply.body, json!({ "user": "bob" }));
}

#[tokio::test]
async fn a_normal_user_on_an_admin_route_is_403_insufficient_scope() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    for route in ["/admin", "/settings"] {
        let reply = app.send(get_with(route, Some(&token))).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{route}");
        assert_eq!(reply.error(), "insufficient_scope");
        assert!(reply.challenge().contains("error=\"insufficient_scope\""));
    }
}

#[tokio::test]
async fn an_admin_token_scoped_setting_read_passes_settings_but_not_full_session_routes() {
    let app = TestApp::new();
    let alice = app.fixture.admin("alice");
    let token = app.scoped(&alice, &[SETTING_READ]).await;
    let reply = app.send(get_with("/settings", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    for route in ["/user", "/admin", "/api_key", "/token"] {
        let reply = app.send(get_with(route, Some(&token))).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{route}");
        assert_eq!(reply.error(), "insufficient_scope", "{route}");
        assert_eq!(
            reply.challenge(),
            "Bearer realm=\"scopegate\", error=\"insufficient_scope\", scope=\"core.user_auth\"",
            "{route}"
        );
    }
}

#[tokio::test]
async fn a_non_admin_cannot_get_a_key_scoped_to_an_admin_scope() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    let body = json!({ "name": "settings", "scope": ["core.setting.read"] });
    let reply = app
        .send(request(Method::POST, "/api_key", Some(&token), Some(body)))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error(), "invalid_request");
    assert_eq!(reply.body["message"], "Invalid scopes: core.setting.read.");
}

#[tokio::test]
async fn a_data_read_token_is_refused_on_full_session_routes_and_passes_data_read_routes() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.scoped(&bob, &[DATA_READ]).await;
    let reply = app.send(get_with("/user", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error(), "insufficient_scope");
    let reply = app.send(get_with("/data", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = app.send(get_with("/data_rw", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.challenge(),
        "Bearer realm=\"scopegate\", error=\"insufficient_scope\", scope=\"core.data.read core.data.write\""
    );
}

#[tokio::test]
async fn a_full_session_satisfies_every_non_strict_guard() {
    let app = TestApp::new();
    let alice = app.fixture.admin("alice");
    let token = app.session(&alice).await;
    for route in [
        "/user",
        "/data",
        "/data_any",
        "/data_rw",
        "/admin",
        "/settings",
        "/guarded/whoami",
    ] {
        let reply = app.send(get_with(route, Some(&token))).await;
        assert_eq!(reply.status, StatusCode::OK, "{route}");
    }
}

#[tokio::test]
async fn the_strict_guard_refuses_a_full_session_without_the_scope_and_accepts_an_anonymous_token_with_it(
) {
    let app = TestApp::new();
    let alice = app.fixture.admin("alice");
    let session = app.session(&alice).await;
    let reply = app.send(get_with("/strict", Some(&session))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.challenge().contains("scope=\"core.data.read\""));
    let anonymous = app.token(NewToken::anonymous().scopes([DATA_READ])).await;
    let reply = app.send(get_with("/strict", Some(&anonymous))).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn the_any_of_guard_needs_one_of_its_scopes() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let writer = app.scoped(&bob, &[DATA_WRITE]).await;
    assert_eq!(
        app.send(get_with("/data_any", Some(&writer))).await.status,
        StatusCode::OK
    );
    let other = app
        .scoped(&bob, &[Scope::new("core.data.own").unwrap()])
        .await;
    let reply = app.send(get_with("/data_any", Some(&other))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body["message"].as_str().unwrap().contains("one of"));
}

#[tokio::test]
async fn an_anonymous_session_token_is_not_a_user() {
    let app = TestApp::new();
    let anonymous = app.token(NewToken::anonymous()).await;
    for route in ["/user", "/data", "/admin"] {
        let reply = app.send(get_with(route, Some(&anonymous))).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{route}");
    }
}

#[tokio::test]
async fn a_route_layer_guard_protects_a_whole_router_and_never_widens_current_user() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let reader = app.scoped(&bob, &[DATA_READ]).await;
    let reply = app.send(get_with("/guarded/whoami", Some(&reader))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.challenge().contains("scope=\"core.data.write\""));
    assert_eq!(
        app.send(get_with("/guarded/whoami", None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A scoped token the route's guard accepted is still no full session.
    let writer = app.scoped(&bob, &[DATA_WRITE]).await;
    let reply = app.send(get_with("/guarded/whoami", Some(&writer))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.challenge().contains("scope=\"core.user_auth\""));
    let session = app.session(&bob).await;
    let reply = app.send(get_with("/guarded/whoami", Some(&session))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({ "user": "bob" }));
}

#[tokio::test]
async fn tokens_that_are_not_live_all_get_the_same_401_invalid_token() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let expired = app
        .token(
            NewToken::for_user(bob.clone())
                .lifetime(std::time::Duration::from_secs_f64(0.01 * 86_400.0)),
        )
        .await;
    let revoked = app.session(&bob).await;
    let principal = app.fixture.gate.authenticate(&revoked).await.unwrap();
    app.fixture
        .gate
        .revoke_token(principal.token_id().expect("a token"))
        .await
        .unwrap();
    let gone_user = app.session(&app.fixture.user("carol")).await;
    app.fixture.users.remove(&"carol".into());
    app.fixture.clock.advance(chrono::TimeDelta::hours(1));
    let live = app.session(&bob).await;
    let mut corrupted = live.clone().into_bytes();
    corrupted[10] = if corrupted[10] == b'a' { b'b' } else { b'a' };
    let corrupted = String::from_utf8(corrupted).unwrap();
    let unknown_but_well_formed = {
        let other = TestApp::new();
        let user = other.fixture.user("bob");
        other.session(&user).await
    };
    let mut messages = Vec::new();
    for token in [
        "not-a-token",
        &corrupted,
        &expired,
        &revoked,
        &gone_user,
        &unknown_but_well_formed,
    ] {
        let reply = app.send(get_with("/data", Some(token))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(reply.error(), "invalid_token");
        assert_eq!(
            reply.challenge(),
            "Bearer realm=\"scopegate\", error=\"invalid_token\""
        );
        messages.push(reply.body["message"].clone());
        // A bad token is an error even where credentials are optional.
        let reply = app.send(get_with("/public", Some(token))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "one message for every kind of bad token");
    assert_eq!(
        app.send(get_with("/data", Some(&live))).await.status,
        StatusCode::OK
    );
}

fn with_authorization(values: &[&[u8]]) -> Request<Body> {
    let mut builder = Request::builder().uri("/data");
    for value in values {
        builder = builder.header(header::AUTHORIZATION, *value);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn malformed_credentials_are_400_invalid_request_on_guarded_and_public_routes() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    let cases: Vec<Vec<Vec<u8>>> = vec![
        vec![b"Bearer".to_vec()],
        vec![b"Bearer ".to_vec()],
        vec![format!("Bearer  {token}").into_bytes()],
        vec![format!("Bearer\t{token}").into_bytes()],
        vec![format!("Bearer {token}\tx").into_bytes()],
        vec![b"Bearer \xc3\xa9t\xc3\xa9".to_vec()],
        vec![b"Bearer \xff".to_vec()],
        vec![
            format!("Bearer {token}").into_bytes(),
            format!("Bearer {token}").into_bytes(),
        ],
    ];
    for case in cases {
        let values: Vec<&[u8]> = case.iter().map(Vec::as_slice).collect();
        let reply = app.send(with_authorization(&values)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{case:?}");
        assert_eq!(reply.error(), "invalid_request");
        assert_eq!(
            reply.challenge(),
            "Bearer realm=\"scopegate\", error=\"invalid_request\""
        );
        let mut public = with_authorization(&values);
        *public.uri_mut() = "/public".parse().unwrap();
        assert_eq!(
            app.send(public).await.status,
            StatusCode::BAD_REQUEST,
            "{case:?}"
        );
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_other_schemes_are_left_alone() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let value = format!("{scheme} {token}");
        let reply = app.send(with_authorization(&[value.as_bytes()])).await;
        assert_eq!(reply.status, StatusCode::OK, "{scheme}");
    }
    let reply = app
        .send(with_authorization(&[b"Basic Ym9iOmJvYi1wYXNz"]))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "unauthorized");
}

#[tokio::test]
async fn a_failing_store_is_503_and_never_grants_access() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    app.fixture.probe.set_failing(true);
    for route in ["/data", "/public", "/token/current"] {
        let reply = app.send(get_with(route, Some(&token))).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{route}");
        assert_eq!(reply.error(), "temporarily_unavailable");
        assert!(reply.headers.get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(reply.headers[header::RETRY_AFTER], "1");
    }
    app.fixture.probe.set_failing(false);
    assert_eq!(
        app.send(get_with("/data", Some(&token))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_failing_user_loader_is_503_and_never_grants_access() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    app.fixture.users.set_failing(true);
    let reply = app.send(get_with("/data", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.error(), "temporarily_unavailable");
    assert_eq!(reply.headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn a_disabled_users_tokens_stop_working_at_once() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    assert_eq!(
        app.send(get_with("/user", Some(&token))).await.status,
        StatusCode::OK
    );
    app.fixture.users.set_active(&bob, false);
    let reply = app.send(get_with("/user", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_token");
}

#[tokio::test]
async fn rejections_put_their_code_and_themselves_in_the_response_extensions() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let reader = app.scoped(&bob, &[DATA_READ]).await;
    let reply = app.send(get_with("/user", Some(&reader))).await;
    assert_eq!(
        reply.response_extensions.get::<ErrorCode>(),
        Some(&ErrorCode::InsufficientScope)
    );
    let rejection = reply.response_extensions.get::<AuthRejection>().unwrap();
    assert_eq!(rejection.status(), StatusCode::FORBIDDEN);
    let reply = app.send(get_with("/user", None)).await;
    assert_eq!(
        reply.response_extensions.get::<ErrorCode>(),
        Some(&ErrorCode::Unauthorized)
    );
}

#[tokio::test]
async fn configured_sources_are_read_and_two_different_credentials_are_refused() {
    let AllSources {
        router, session, ..
    } = AllSources::new().await;
    let token = session.as_str();
    let (unknown, _) =
        scopegate::secret::SecretCodec::default().generate(scopegate::secret::SecretKind::Token);
    // `/user` needs a user's session: each source must carry it there, and a
    // made-up token in each source is read (and refused), not ignored.
    for (secret, status) in [
        (token, StatusCode::OK),
        (unknown.expose(), StatusCode::UNAUTHORIZED),
    ] {
        let header = Request::builder()
            .uri("/user")
            .header("Girder-Token", secret);
        let cookie = Request::builder()
            .uri("/user")
            .header("Cookie", format!("a=b; token={secret}"));
        let query = Request::builder().uri(format!("/user?token={secret}"));
        for (source, builder) in [("header", header), ("cookie", cookie), ("query", query)] {
            let reply = send(&router, builder.body(Body::empty()).unwrap()).await;
            assert_eq!(reply.status, status, "{source}: {:?}", reply.body);
            if status == StatusCode::OK {
                assert_eq!(reply.body["user"], "bob", "{source}");
            } else {
                assert_eq!(reply.error(), "invalid_token", "{source}");
            }
        }
    }
    let both = Request::builder()
        .uri("/user")
        .header("Girder-Token", token)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, both).await.status, StatusCode::OK);
    let different = Request::builder()
        .uri("/user?token=sg_tok_other")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let reply = send(&router, different).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.challenge(),
        "Bearer realm=\"files\", error=\"invalid_request\""
    );
}

#[tokio::test]
async fn optional_sources_are_off_by_default() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    let header = Request::builder()
        .uri("/user")
        .header("Girder-Token", &token);
    let cookie = Request::builder()
        .uri("/user")
        .header("Cookie", format!("token={token}"));
    let query = Request::builder().uri(format!("/user?token={token}"));
    for builder in [header, cookie, query] {
        let reply = app.send(builder.body(Body::empty()).unwrap()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.error(), "unauthorized");
    }
}

#[tokio::test]
async fn revocation_is_seen_by_the_next_request() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    assert_eq!(
        app.send(get_with("/data", Some(&token))).await.status,
        StatusCode::OK
    );
    let reply = app
        .send(request(
            Method::DELETE,
            "/token/session",
            Some(&token),
            None,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = app.send(get_with("/data", Some(&token))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_layer_works_in_a_plain_tower_stack_with_any_body_type() {
    use std::convert::Infallible;

    use scopegate::Authentication;
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let token = app.session(&bob).await;
    let service = ServiceBuilder::new()
        .layer(app.state.layer())
        .service(service_fn(|request: Request<String>| async move {
            let auth = request.extensions().get::<Authentication>().unwrap();
            let who = auth
                .principal()
                .and_then(|p| p.user_id())
                .map(|id| id.to_string());
            Ok::<_, Infallible>(http::Response::new(who.unwrap_or_else(|| "nobody".into())))
        }));
    let request = Request::builder()
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.body(), "bob");
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.body(), "nobody");
}

/// A router whose handlers take a guard and `CurrentUser` in both orders, and an
/// optional guard.
fn extractor_routes(app: &TestApp) -> Router {
    use common::app::DataRead;
    use scopegate::{CurrentUser, RequireScope};
    Router::new()
        .route(
            "/guard_then_user",
            get(|_: RequireScope<DataRead>, user: CurrentUser| async move {
                user.id().as_str().to_owned()
            }),
        )
        .route(
            "/user_then_guard",
            get(|user: CurrentUser, _: RequireScope<DataRead>| async move {
                user.id().as_str().to_owned()
            }),
        )
        .route(
            "/guard_yields_user",
            get(|who: RequireScope<DataRead>| async move {
                who.user_id()
                    .map(|id| id.as_str().to_owned())
                    .unwrap_or_default()
            }),
        )
        .route(
            "/optional",
            get(|who: Option<RequireScope<DataRead>>| async move {
                match who {
                    Some(who) => format!("token {}", who.token_id().expect("a token").as_str()),
                    None => "no credential".to_owned(),
                }
            }),
        )
        .layer(app.state.layer())
}

#[tokio::test]
async fn a_guard_and_current_user_answer_the_same_in_either_order() {
    let app = TestApp::new();
    let router = extractor_routes(&app);
    let bob = app.fixture.user("bob");
    let scoped = app.scoped(&bob, &[DATA_READ]).await;
    let session = app.session(&bob).await;
    for path in ["/guard_then_user", "/user_then_guard"] {
        let reply = send(&router, get_with(path, Some(&scoped))).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{path}: {:?}",
            reply.body
        );
        assert_eq!(reply.error(), "insufficient_scope");
        let reply = send(&router, get_with(path, Some(&session))).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body, json!("bob"));
    }
    // The guard itself yields the user behind a scoped token.
    let reply = send(&router, get_with("/guard_yields_user", Some(&scoped))).await;
    assert_eq!((reply.status, reply.body), (StatusCode::OK, json!("bob")));
}

#[tokio::test]
async fn an_optional_guard_is_none_without_a_credential_and_refuses_a_bad_one() {
    let app = TestApp::new();
    let router = extractor_routes(&app);
    let reply = send(&router, get_with("/optional", None)).await;
    assert_eq!(
        (reply.status, reply.body),
        (StatusCode::OK, json!("no credential"))
    );
    let bob = app.fixture.user("bob");
    let reply = send(
        &router,
        get_with("/optional", Some(&app.scoped(&bob, &[DATA_READ]).await)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.as_str().unwrap().starts_with("token "));
    let reply = send(
        &router,
        get_with("/optional", Some(&app.scoped(&bob, &[DATA_WRITE]).await)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = send(
        &router,
        get_with("/optional", Some("sg_tok_not-a-real-token")),
    )
    .await;
    // Well-formed but with a bad checksum: refused, never taken for "none".
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    assert_eq!(reply.error(), "invalid_token");
}

#[tokio::test]
async fn the_401_without_credentials_names_every_configured_source() {
    let dir = tempfile::tempdir().unwrap();
    let (router, _) = app_with_all_sources(dir.path(), Users::default());
    let reply = send(&router, get_with("/user", None)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.body["message"],
        json!(
            "Authentication required: send a token in `Authorization: Bearer <token>`, \
             the `girder-token` header, the `token` cookie or the `token` query parameter."
        )
    );
    let app = TestApp::new();
    let reply = app.send(get_with("/user", None)).await;
    assert_eq!(
        reply.body["message"],
        json!("Authentication required: send a token in `Authorization: Bearer <token>`.")
    );
}

#[tokio::test]
async fn an_api_key_sent_as_a_bearer_token_is_told_to_exchange_it_without_a_store_read() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let key = app.fixture.key(&bob, scopegate::NewApiKey::new("k")).await;
    let reads = app.fixture.probe.digest_reads();
    let reply = app.send(get_with("/user", Some(key.secret.expose()))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_token");
    let message = reply.body["message"].as_str().unwrap();
    assert!(
        message.contains("API key") && message.contains("POST /api_key/token"),
        "{message}"
    );
    assert_eq!(app.fixture.probe.digest_reads(), reads);
    // Any other refused token keeps the one message that reveals nothing.
    let reply = app
        .send(get_with("/user", Some("sg_tok_not-a-real-token")))
        .await;
    assert_eq!(reply.body["message"], json!("Invalid or expired token."));
}

#[tokio::test]
async fn malformed_and_bad_checksum_tokens_are_refused_without_a_store_read() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let live = app.session(&bob).await;
    // Seen once, so a memo of its digest exists: a near miss must not match it.
    assert_eq!(
        app.send(get_with("/user", Some(&live))).await.status,
        StatusCode::OK
    );
    let mut bad_checksum = live.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'A' { 'B' } else { 'A' });
    let reads = app.fixture.probe.digest_reads();
    for token in [
        bad_checksum.as_str(),
        "sg_tok_short",
        "sg_zzz_not-a-kind",
        "garbage",
    ] {
        let reply = app.send(get_with("/user", Some(token))).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(reply.error(), "invalid_token");
    }
    assert_eq!(app.fixture.probe.digest_reads(), reads, "no store read");
}

scopegate::scopes! {
    /// A marker whose scope the test app's registry never declares (a typo).
    struct NeverRegistered = "core.data.reed";
}

#[tokio::test]
async fn a_guard_on_a_scope_the_registry_never_declared_is_a_500_never_a_pass() {
    let app = TestApp::new();
    let router = Router::new()
        .route(
            "/typo",
            get(|_: scopegate::RequireScope<NeverRegistered>| async { "passed" }),
        )
        .route(
            "/typo_optional",
            get(|_: Option<scopegate::RequireScope<NeverRegistered>>| async { "passed" }),
        )
        .layer(app.state.layer());
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    for path in ["/typo", "/typo_optional"] {
        for token in [Some(session.as_str()), None] {
            let reply = send(&router, get_with(path, token)).await;
            assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert_eq!(reply.error(), "server_error");
        }
    }
}

/// A guard remembers that its scopes were found registered, so later requests
/// skip the look-up. What it remembers belongs to one state's registry: another
/// state that never declared the scope still refuses the guard, before and after.
#[tokio::test]
async fn a_guard_found_registered_in_one_state_is_still_checked_in_another() {
    let app = TestApp::new();
    let dir = tempfile::tempdir().unwrap();
    let users = Users::default();
    let bob = users.add("bob", false);
    let mut registry = girder_scopes();
    registry.register("core.data.reed", "Reed", "").unwrap();
    let declared = AuthState::builder(
        ScopeGate::builder(SledStore::open(dir.path()).unwrap(), users).with_registry(registry),
    )
    .build()
    .unwrap();
    let guarded = |state: &AuthState| {
        Router::new()
            .route(
                "/typo",
                get(|_: scopegate::RequireScope<NeverRegistered>| async { "passed" }),
            )
            .layer(state.layer())
    };
    let (declaring, undeclaring) = (guarded(&declared), guarded(&app.state));
    let issued = declared
        .gate()
        .create_token(NewToken::for_user(bob))
        .await
        .unwrap();
    let bob_elsewhere = app.fixture.user("bob");
    let session_elsewhere = app.session(&bob_elsewhere).await;
    for _ in 0..3 {
        let passed = send(&declaring, get_with("/typo", Some(issued.secret.expose()))).await;
        assert_eq!(passed.status, StatusCode::OK);
        let refused = send(&undeclaring, get_with("/typo", Some(&session_elsewhere))).await;
        assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(refused.error(), "server_error");
    }
}

/// Each state's refusals name its own realm, however many states take turns on
/// one thread (each thread keeps copies of the states' contexts).
#[tokio::test]
async fn states_taking_turns_on_one_thread_each_answer_with_their_own_realm() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let apps: Vec<Router> = (0..6)
        .map(|i| {
            let state = AuthState::builder(
                ScopeGate::builder(store.clone(), Users::default()).with_registry(girder_scopes()),
            )
            .with_realm(format!("realm-{i}"))
            .build()
            .unwrap();
            common::app::routes(state)
        })
        .collect();
    for _ in 0..2 {
        for (i, app) in apps.iter().enumerate() {
            let reply = send(app, get_with("/user", None)).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            assert_eq!(reply.challenge(), format!("Bearer realm=\"realm-{i}\""));
        }
    }
}

#[tokio::test]
async fn tokens_cannot_carry_scopes_no_registry_declares() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let typo = Scope::new("core.data.reed").unwrap();
    let err = app
        .fixture
        .gate
        .create_token(NewToken::for_user(bob.clone()).scopes([typo.clone()]))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "Invalid scopes: core.data.reed.");
    let issued = app
        .fixture
        .gate
        .create_token(NewToken::for_user(bob).scopes([DATA_READ]))
        .await
        .unwrap();
    let refused = app
        .fixture
        .gate
        .add_token_scopes(&issued.token.id, &[typo])
        .await;
    assert!(
        matches!(refused, Err(scopegate::Error::InvalidRequest(_))),
        "{refused:?}"
    );
    let token = app
        .fixture
        .gate
        .authenticate(issued.secret.expose())
        .await
        .unwrap();
    assert_eq!(token.scopes().len(), 1, "nothing was added");
}

#[tokio::test]
async fn asking_for_the_user_as_the_wrong_type_fails_loudly_naming_both_types() {
    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let user = app
        .fixture
        .gate
        .load_active_user(&bob)
        .await
        .unwrap()
        .unwrap();
    assert!(!user.get::<common::TestUser>().admin);
    assert!(user.try_get::<String>().is_none());
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = user.get::<String>();
    }))
    .unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("alloc::string::String"), "{message}");
    assert!(message.contains("TestUser"), "{message}");
}

/// The test routes over a sled store in `dir` and `users`, and the secret of a
/// session token for `user`.
async fn routes_and_session(
    dir: &std::path::Path,
    users: impl scopegate::UserLoader,
    user: &scopegate::UserId,
) -> (Router, String) {
    let state = AuthState::builder(
        ScopeGate::builder(SledStore::open(dir).unwrap(), users).with_registry(girder_scopes()),
    )
    .build()
    .unwrap();
    let issued = state
        .gate()
        .create_token(NewToken::for_user(user.clone()))
        .await
        .unwrap();
    (
        common::app::routes(state),
        issued.secret.expose().to_owned(),
    )
}

/// `GET /user` with `secret` answers bob, `times` times over.
async fn serves_bob(app: &Router, secret: &str, times: usize) {
    for _ in 0..times {
        let reply = send(app, get_with("/user", Some(secret))).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(reply.body["user"], "bob");
    }
}

/// An app's loader that awaits something before answering (its database, say):
/// never ready on its first poll, and counting its calls.
#[derive(Clone, Default)]
struct SlowUsers {
    inner: Users,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl scopegate::UserLoader for SlowUsers {
    type User = <Users as scopegate::UserLoader>::User;

    async fn load_user(
        &self,
        id: &scopegate::UserId,
    ) -> Result<Option<Self::User>, scopegate::BoxError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.inner.load_user(id).await
    }
}

/// The test table behind a loader that answers at once only while `now` is set,
/// counting how often it is awaited and how often asked at once.
#[derive(Clone, Default)]
struct SometimesNowUsers {
    inner: Users,
    now: std::sync::Arc<std::sync::atomic::AtomicBool>,
    awaited: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    asked_now: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl scopegate::UserLoader for SometimesNowUsers {
    type User = <Users as scopegate::UserLoader>::User;

    async fn load_user(
        &self,
        id: &scopegate::UserId,
    ) -> Result<Option<Self::User>, scopegate::BoxError> {
        self.awaited
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.load_user(id).await
    }

    fn load_user_now(
        &self,
        id: &scopegate::UserId,
    ) -> Option<Result<Option<Self::User>, scopegate::BoxError>> {
        self.asked_now
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.now.load(std::sync::atomic::Ordering::SeqCst) {
            self.inner.load_user_now(id)
        } else {
            None
        }
    }
}

/// A loader that answers at once (`load_user_now`) is never awaited, and what it
/// answers counts as `load_user`'s would: an inactive user is refused, a failure
/// is a 503. One that declines is awaited, once per request.
#[tokio::test]
async fn a_loader_that_answers_at_once_is_never_awaited_and_one_that_declines_is() {
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let users = SometimesNowUsers::default();
    users.now.store(true, SeqCst);
    let bob = users.inner.add("bob", false);
    let (app, session) = routes_and_session(dir.path(), users.clone(), &bob).await;
    let secret = session.as_str();
    let awaited_before = users.awaited.load(SeqCst);
    serves_bob(&app, secret, 3).await;
    assert_eq!(users.awaited.load(SeqCst), awaited_before, "never awaited");
    assert!(users.asked_now.load(SeqCst) >= 3);

    users.inner.set_active(&bob, false);
    let reply = send(&app, get_with("/user", Some(secret))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_token");
    users.inner.set_active(&bob, true);
    users.inner.set_failing(true);
    let reply = send(&app, get_with("/user", Some(secret))).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    users.inner.set_failing(false);
    assert_eq!(users.awaited.load(SeqCst), awaited_before, "never awaited");

    users.now.store(false, SeqCst);
    serves_bob(&app, secret, 2).await;
    assert_eq!(
        users.awaited.load(SeqCst),
        awaited_before + 2,
        "awaited once a request"
    );
}

/// The layer settles a cached token at once when the loader answers at once; a
/// loader that must wait still authenticates, and is asked once per request: the
/// load it started is finished, not started again. An inactive user is refused
/// on that path too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_loader_that_is_not_ready_at_once_authenticates_and_is_asked_once() {
    let dir = tempfile::tempdir().unwrap();
    let users = SlowUsers::default();
    let bob = users.inner.add("bob", false);
    let (app, session) = routes_and_session(dir.path(), users.clone(), &bob).await;
    let secret = session.as_str();
    let asked_before = users.calls.load(std::sync::atomic::Ordering::SeqCst);
    // The first request reads the store; the next ones hit the cache.
    serves_bob(&app, secret, 3).await;
    let asked = users.calls.load(std::sync::atomic::Ordering::SeqCst) - asked_before;
    assert_eq!(asked, 3, "one load per request");

    users.inner.set_active(&bob, false);
    let reply = send(&app, get_with("/user", Some(secret))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.error(), "invalid_token");
}

#[tokio::test]
async fn a_guard_without_the_layer_answers_a_plain_500_and_logs_the_hint_for_the_developer() {
    let (captured, _guard) = common::captured::Captured::start();
    let app: Router = Router::new().route(
        "/me",
        get(|user: scopegate::CurrentUser| async move { user.id().to_string() }),
    );
    let reply = send(&app, get_with("/me", None)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.error(), "server_error");
    let body = reply.body.to_string();
    assert!(
        !body.contains("layer") && !body.contains("Authentication"),
        "the client gets no developer hint: {body}"
    );
    let log = captured.text();
    assert!(log.contains("auth.layer()"), "the log has the hint: {log}");
}
