//! The authentication middleware: [`AuthLayer`] and [`AuthService`]; user docs are on
//! [`AuthLayer`].

mod authentication;
mod credentials;
mod future;
mod layer;
mod service;
mod state;

pub use self::{
    authentication::Authentication,
    future::ResponseFuture,
    layer::AuthLayer,
    service::AuthService,
    state::{AuthState, AuthStateBuilder, DEFAULT_REALM},
};
