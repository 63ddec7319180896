//! The authentication middleware: [`AuthLayer`] and [`AuthService`]; user docs are on
//! [`AuthLayer`].

mod anonymous;
mod authentication;
mod credentials;
mod extensions;
mod future;
mod layer;
mod registered;
mod service;
mod state;

pub(crate) use self::anonymous::AnonymousLimiter;
pub use self::{
    anonymous::AnonymousSessions,
    authentication::Authentication,
    future::ResponseFuture,
    layer::AuthLayer,
    service::AuthService,
    state::{AuthState, AuthStateBuilder},
};
