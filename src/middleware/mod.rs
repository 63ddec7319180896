//! The authentication middleware: [`AuthLayer`] and [`AuthService`]; user docs are on
//! [`AuthLayer`].

mod anonymous;
mod authentication;
mod context;
mod credentials;
mod extensions;
mod future;
mod layer;
mod pipeline;
mod registered;
mod service;
mod span;
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
