//! [`Credential`]: what authenticated a request.

use std::sync::Arc;

use crate::{api_key::ApiKey, token::Token};

/// What authenticated a request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credential {
    /// A token: issued by the app, minted from a key, or anonymous.
    Token(Arc<Token>),
    /// An API key sent as it is, with direct key authentication on
    /// ([`ScopeGateBuilder::with_direct_api_keys`](crate::ScopeGateBuilder::with_direct_api_keys)).
    ApiKey(Arc<ApiKey>),
}
