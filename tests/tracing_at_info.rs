//! An app whose subscriber takes `INFO`, no more: the level the request's span is
//! made at. Alone in its test binary, because whether the layer makes the span
//! follows the most verbose subscriber of the process, and other tests capture
//! `TRACE`.

mod common;

use axum::http::StatusCode;
use common::{
    app::{get_with, TestApp},
    captured::Captured,
};

#[tokio::test]
async fn a_subscriber_at_info_gets_each_requests_span_with_who_asked_and_how_it_ended() {
    let (captured, _guard) = Captured::start_at(tracing::Level::INFO);

    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    assert_eq!(
        app.send(get_with("/user", Some(&session))).await.status,
        StatusCode::OK
    );

    let log = captured.text();
    assert!(log.contains("scopegate"), "no request span: {log}");
    assert!(log.contains("outcome=\"authenticated\""), "{log}");
    assert!(log.contains("user_id=\"bob\""), "{log}");
    assert!(log.contains("credential=\"token\""), "{log}");
}
