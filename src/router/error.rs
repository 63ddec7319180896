//! [`ApiError`]: every way a router handler fails, as one response type.

use axum::response::{IntoResponse, Response};

use crate::{error::Error, rejection::AuthRejection};

/// A handler's failure: a gate error, a refused caller, or an input error already
/// rendered.
pub(super) enum ApiError {
    Gate(Error),
    Auth(AuthRejection),
    Input(Box<Response>),
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError::Gate(err)
    }
}

impl From<AuthRejection> for ApiError {
    fn from(rejection: AuthRejection) -> Self {
        ApiError::Auth(rejection)
    }
}

impl From<Response> for ApiError {
    fn from(response: Response) -> Self {
        ApiError::Input(Box::new(response))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Gate(err) => err.into_response(),
            ApiError::Auth(rejection) => rejection.into_response(),
            ApiError::Input(response) => *response,
        }
    }
}
