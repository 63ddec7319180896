//! [`openapi`]: an OpenAPI 3.1 description of [`router`](super::router).

use serde_json::{json, Value};

/// The OpenAPI 3.1 description of [`router()`](crate::router()): every route, its
/// parameters, bodies and answers, with `{"error", "message"}` for every failure.
/// Serve it from the app (the quickstart serves it at `/openapi.json`); paths are
/// relative to where the router is mounted.
pub fn openapi() -> Value {
    let error = json!({ "description": "An error", "content": json_of(schema("Error")) });
    let id =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
    let page = json!([
        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 50 } },
        { "name": "offset", "in": "query", "schema": { "type": "integer", "minimum": 0, "default": 0 } }
    ]);
    let mut key_list_params = page.as_array().cloned().unwrap_or_default();
    key_list_params.push(json!({
        "name": "user_id", "in": "query",
        "description": "Another user's keys (admins only).",
        "schema": { "type": "string" }
    }));
    let bearer = json!([{ "bearer": [] }]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "scopegate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "API keys and the tokens they are exchanged for. Durations are in days, \
                            as Girder counts them; secrets are shown once."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas()
        },
        "paths": {
            "/api_key": {
                "post": op("Create an API key; its secret `key` is shown once.", &bearer, None,
                    Some(body("NewApiKey")), ("201", "The key, with its secret", schema("IssuedApiKey")), &error),
                "get": op("The caller's keys, or another user's (admins).", &bearer, Some(&Value::Array(key_list_params)),
                    None, ("200", "Keys, oldest first", array_of("ApiKey")), &error)
            },
            "/api_key/token": {
                "post": op("Exchange a key for a short-lived token.", &json!([]), None,
                    Some(body("TokenRequest")), ("200", "The token, with its secret", schema("AuthToken")), &error)
            },
            "/api_key/{id}": {
                "put": op("Change a key; absent fields stay as they are.", &bearer, Some(&id),
                    Some(body("ApiKeyUpdate")), ("200", "The key", schema("ApiKey")), &error),
                "delete": op("Delete a key and revoke its tokens.", &bearer, Some(&id),
                    None, ("200", "Done", schema("Message")), &error)
            },
            "/api_key/{id}/rotate": {
                "post": op("Give a key a new secret; the old one works for `grace_seconds`. An administrator \
                    rotating another user's key gets no secret back, and gives no grace.", &bearer, Some(&id),
                    Some(body("Rotation")), ("200", "The key, with its new secret (for its owner)",
                    json!({ "anyOf": [schema("IssuedApiKey"), schema("ApiKey")] })), &error)
            },
            "/token": {
                "get": op("The caller's tokens.", &bearer, Some(&page),
                    None, ("200", "Tokens, oldest first", array_of("Token")), &error)
            },
            "/token/current": {
                "get": op("The caller's token, or null without one.", &json!([]), None,
                    None, ("200", "The token", json!({ "oneOf": [schema("Token"), { "type": "null" }] })), &error)
            },
            "/token/session": {
                "get": op("The caller's token; without one, a new anonymous session if the app allows them.",
                    &json!([]), None, None,
                    ("200", "A token", json!({ "oneOf": [schema("Token"), schema("IssuedToken")] })), &error),
                "delete": op("Revoke the caller's token (log out).", &bearer, None,
                    None, ("200", "Done", schema("Message")), &error)
            },
            "/token/scopes": {
                "get": op("The scopes users may put on keys, and the admin-only ones.", &json!([]), None,
                    None, ("200", "The catalogue", schema("ScopeCatalogue")), &error)
            },
            "/token/{id}": {
                "delete": op("Revoke a token (the caller's; admins: anyone's).", &bearer, Some(&id),
                    None, ("200", "Done", schema("Message")), &error)
            }
        }
    })
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn array_of(name: &str) -> Value {
    json!({ "type": "array", "items": schema(name) })
}

fn json_of(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn body(name: &str) -> Value {
    json!({ "required": false, "content": json_of(schema(name)) })
}

/// One operation: its answer on success, and the error body on any failure.
fn op(
    summary: &str,
    security: &Value,
    parameters: Option<&Value>,
    request: Option<Value>,
    (status, description, success): (&str, &str, Value),
    error: &Value,
) -> Value {
    let mut op = json!({
        "summary": summary,
        "security": security,
        "responses": {
            status: { "description": description, "content": json_of(success) },
            "default": error
        }
    });
    if let Some(parameters) = parameters {
        op["parameters"] = parameters.clone();
    }
    if let Some(request) = request {
        op["requestBody"] = request;
    }
    op
}

fn nullable(kind: &str) -> Value {
    json!({ "type": [kind, "null"] })
}

fn schemas() -> Value {
    let time = json!({ "type": "string", "format": "date-time" });
    let nullable_time = json!({ "type": ["string", "null"], "format": "date-time" });
    let scopes = json!({ "type": "array", "items": { "type": "string" } });
    // Scope ids as the registry accepts them: printable ASCII, no space, `"` or `\`.
    let nullable_scopes = json!({
        "type": ["array", "null"],
        "items": { "type": "string", "pattern": "^[!#-\\[\\]-~]{1,200}$" }
    });
    let name = json!({ "type": "string", "minLength": 1, "maxLength": 255 });
    let days = json!({
        "type": ["number", "null"],
        "minimum": 1.0 / 86_400.0,
        "maximum": 3650,
        "description": "Days, from one second to 3650 days."
    });
    let key_properties = json!({
        "id": { "type": "string" },
        "user_id": { "type": "string" },
        "name": { "type": "string" },
        "scope": nullable_scopes,
        "token_duration": nullable("number"),
        "active": { "type": "boolean" },
        "locked": { "type": "boolean", "description": "Deactivated by an administrator: only an administrator reactivates it." },
        "created": time,
        "last_use": nullable_time,
        "expires": nullable_time,
        "start": { "type": "string" },
        "previous_secret_valid_until": nullable_time
    });
    let key_required = json!([
        "id",
        "user_id",
        "name",
        "scope",
        "token_duration",
        "active",
        "locked",
        "created",
        "last_use",
        "expires",
        "start",
        "previous_secret_valid_until"
    ]);
    let mut issued_properties = key_properties.clone();
    issued_properties["key"] = json!({ "type": "string" });
    let mut issued_required = key_required.clone();
    if let Some(required) = issued_required.as_array_mut() {
        required.push(json!("key"));
    }
    let token_properties = json!({
        "id": { "type": "string" },
        "user_id": nullable("string"),
        "scope": scopes,
        "created": time,
        "expires": time,
        "api_key_id": nullable("string"),
        "last_use": nullable_time
    });
    let issued_token = json!({
        "type": "object",
        "required": ["token", "id", "expires", "scope"],
        "properties": {
            "token": { "type": "string" }, "id": { "type": "string" },
            "expires": time, "scope": scopes
        }
    });
    let scope_document = json!({
        "type": "object",
        "required": ["id", "name", "description"],
        "properties": {
            "id": { "type": "string" }, "name": { "type": "string" },
            "description": { "type": "string" }
        }
    });
    json!({
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": { "error": { "type": "string" }, "message": { "type": "string" } }
        },
        "Message": {
            "type": "object",
            "required": ["message"],
            "properties": { "message": { "type": "string" } }
        },
        "ApiKey": { "type": "object", "required": key_required, "properties": key_properties },
        "IssuedApiKey": { "type": "object", "required": issued_required, "properties": issued_properties },
        "Token": {
            "type": "object",
            "required": ["id", "user_id", "scope", "created", "expires", "api_key_id", "last_use"],
            "properties": token_properties
        },
        "IssuedToken": issued_token,
        "AuthToken": {
            "type": "object",
            "required": ["user", "auth_token"],
            "properties": {
                "user": {
                    "type": "object", "required": ["id"],
                    "properties": { "id": { "type": "string" } }
                },
                "auth_token": { "$ref": "#/components/schemas/IssuedToken" }
            }
        },
        "ScopeCatalogue": {
            "type": "object",
            "required": ["custom", "admin_custom"],
            "properties": {
                "custom": { "type": "array", "items": scope_document },
                "admin_custom": { "type": "array", "items": scope_document }
            }
        },
        "NewApiKey": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name"],
            "properties": {
                "name": name,
                "scope": nullable_scopes,
                "token_duration": days.clone(),
                "active": { "type": "boolean" },
                "expires_in_days": days.clone()
            }
        },
        "ApiKeyUpdate": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "name": name,
                "scope": nullable_scopes,
                "token_duration": days.clone(),
                "active": { "type": "boolean" }
            }
        },
        "TokenRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["key"],
            "properties": {
                "key": { "type": "string" },
                "duration": days,
                "scope": nullable_scopes
            }
        },
        "Rotation": {
            "type": "object",
            "additionalProperties": false,
            "properties": { "grace_seconds": { "type": "integer", "minimum": 0 } }
        }
    })
}
