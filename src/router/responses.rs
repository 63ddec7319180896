//! The router's own error responses: input it cannot take, and limits reached.

use axum::response::Response;
use http::{header, HeaderValue, StatusCode};

use crate::rejection::{error_response, ErrorCode};

/// A 429 `too_many_requests` with `Retry-After` in whole seconds (at least 1).
pub(crate) fn too_many_requests(message: &str, retry_after: std::time::Duration) -> Response {
    let mut response = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TooManyRequests,
        message,
        None,
    );
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// A 400 `invalid_request` for bad input outside authentication (no challenge).
pub(crate) fn invalid_input(message: &str) -> Response {
    input_error(StatusCode::BAD_REQUEST, message)
}

/// An `invalid_request` with another 4xx status, such as 413 for a body too large.
pub(crate) fn input_error(status: StatusCode, message: &str) -> Response {
    error_response(status, ErrorCode::InvalidRequest, message, None)
}
