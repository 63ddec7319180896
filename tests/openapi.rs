//! The OpenAPI description matches the router: every operation it lists is served
//! (no 404 or 405), and its JSON is OpenAPI 3.1 with every `$ref` resolvable.
//! `.ci/run` also runs schemathesis against the running quickstart.

mod common;

use axum::http::{Method, StatusCode};
use common::app::{request, send, TestApp};
use serde_json::Value;

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_operation_the_description_lists_is_served_and_every_ref_resolves() {
    let spec = scopegate::router::openapi();
    assert_eq!(spec["openapi"], "3.1.0");
    let mut targets = Vec::new();
    refs(&spec, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let name = target.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            spec["components"]["schemas"].get(name).is_some(),
            "{target}"
        );
    }

    let app = TestApp::new();
    let bob = app.fixture.user("bob");
    let session = app.session(&bob).await;
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let uri = path.replace("{id}", "unknown-id");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = send(
                &app.router,
                request(method.clone(), &uri, Some(&session), None),
            )
            .await;
            assert!(
                reply.status != StatusCode::NOT_FOUND || reply.error() == "not_found",
                "{method} {uri}: not routed"
            );
            assert_ne!(
                reply.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {uri}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 12, "the router's twelve operations");
}
