//! The scope guards: [`RequireScope`], [`RequireAnyScope`], [`RequireScopeStrict`]
//! and [`RequireAdmin`].

use std::{fmt, marker::PhantomData, ops::Deref};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use super::authentication;
use crate::{
    middleware::Authentication,
    principal::Principal,
    rejection::AuthRejection,
    scope::{join_scopes, Scope},
    scope_set::ScopeSet,
};

/// How a guard judges a live token.
trait Check {
    /// `required` is the scopes of `S` ([`ScopeSet::with_scopes`]).
    fn check(
        auth: &Authentication,
        principal: &Principal,
        required: &[Scope],
    ) -> Result<(), AuthRejection>;
}

macro_rules! guard {
    ($(#[$meta:meta])* $name:ident<$s:ident $(= $default:ty)?>) => {
        $(#[$meta])*
        pub struct $name<$s $(= $default)?> {
            principal: Principal,
            _scopes: PhantomData<fn() -> $s>,
        }

        impl<$s> $name<$s> {
            /// The token that passed.
            pub fn into_principal(self) -> Principal {
                self.principal
            }
        }

        impl<$s> Deref for $name<$s> {
            type Target = Principal;

            fn deref(&self) -> &Principal {
                &self.principal
            }
        }

        impl<$s> Clone for $name<$s> {
            fn clone(&self) -> Self {
                Self { principal: self.principal.clone(), _scopes: PhantomData }
            }
        }

        impl<$s> fmt::Debug for $name<$s> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("scopes", &std::any::type_name::<$s>())
                    .field("principal", &self.principal)
                    .finish()
            }
        }

        impl<$s: ScopeSet, St: Send + Sync> FromRequestParts<St> for $name<$s> {
            type Rejection = AuthRejection;

            async fn from_request_parts(
                parts: &mut Parts,
                _state: &St,
            ) -> Result<Self, Self::Rejection> {
                let auth = authentication(parts)?;
                $s::with_scopes(|required| {
                    auth.ensure_registered::<$s>(required)?;
                    let principal = auth.require()?;
                    <Self as Check>::check(auth, principal, required)?;
                    Ok(Self { principal: principal.clone(), _scopes: PhantomData })
                })
            }
        }

        /// `None` without a credential; a refused credential, or a live token the
        /// guard does not let through, is still the guard's rejection.
        impl<$s: ScopeSet, St: Send + Sync> OptionalFromRequestParts<St> for $name<$s> {
            type Rejection = AuthRejection;

            async fn from_request_parts(
                parts: &mut Parts,
                _state: &St,
            ) -> Result<Option<Self>, Self::Rejection> {
                let auth = authentication(parts)?;
                $s::with_scopes(|required| {
                    auth.ensure_registered::<$s>(required)?;
                    let Some(principal) = auth.optional()? else {
                        return Ok(None);
                    };
                    <Self as Check>::check(auth, principal, required)?;
                    Ok(Some(Self { principal: principal.clone(), _scopes: PhantomData }))
                })
            }
        }
    };
}

guard! {
    /// Lets a token through if it is a user's full session (`core.user_auth`) or
    /// carries **all** the scopes of `S`; an anonymous token with the scopes passes
    /// too. `S = ()` asks for a full session.
    ///
    /// No credential: 401. A refused credential: its own 400/401/503. A live token
    /// without the scopes: 403 `insufficient_scope` naming them.
    ///
    /// ```
    /// use scopegate::RequireScope;
    /// scopegate::scopes! { pub struct DataRead = "core.data.read"; }
    ///
    /// async fn list_data(who: RequireScope<DataRead>) -> String {
    ///     format!("data for {:?}", who.user_id())
    /// }
    /// let _: axum::routing::MethodRouter = axum::routing::get(list_data);
    /// ```
    RequireScope<S>
}

impl<S: ScopeSet> Check for RequireScope<S> {
    fn check(
        auth: &Authentication,
        principal: &Principal,
        required: &[Scope],
    ) -> Result<(), AuthRejection> {
        if required.is_empty() {
            return full_session(auth, principal);
        }
        if principal.allows(required) {
            return Ok(());
        }
        let message = format!("Invalid token scope. Required: {}.", join_scopes(required));
        Err(auth.insufficient(required, message))
    }
}

guard! {
    /// Like [`RequireScope`], but **one** of the scopes of `S` is enough (a full
    /// session still passes). `S = ()` asks for a full session.
    RequireAnyScope<S>
}

impl<S: ScopeSet> Check for RequireAnyScope<S> {
    fn check(
        auth: &Authentication,
        principal: &Principal,
        required: &[Scope],
    ) -> Result<(), AuthRejection> {
        if required.is_empty() {
            return full_session(auth, principal);
        }
        if principal.is_full_session() || required.iter().any(|s| principal.scopes().contains(s)) {
            return Ok(());
        }
        let message = format!(
            "Invalid token scope. Required one of: {}.",
            join_scopes(required)
        );
        Err(auth.insufficient(required, message))
    }
}

guard! {
    /// The strict guard: the token must itself carry all the scopes of `S`; a full
    /// session (`core.user_auth`) does **not** stand in for them. Anonymous tokens
    /// with the scopes pass. `S = ()` lets any live token through.
    RequireScopeStrict<S>
}

impl<S: ScopeSet> Check for RequireScopeStrict<S> {
    fn check(
        auth: &Authentication,
        principal: &Principal,
        required: &[Scope],
    ) -> Result<(), AuthRejection> {
        if principal.has_scope(required) {
            return Ok(());
        }
        let message = format!("Invalid token scope. Required: {}.", join_scopes(required));
        Err(auth.insufficient(required, message))
    }
}

guard! {
    /// An admin user: with `S = ()`, in a full session;
    /// with scopes, a full session or a token carrying all of them (so an admin's
    /// token scoped `core.setting.read` passes `RequireAdmin<SettingRead>`).
    /// Anyone else: 403 `insufficient_scope`.
    RequireAdmin<S = ()>
}

impl<S: ScopeSet> Check for RequireAdmin<S> {
    fn check(
        auth: &Authentication,
        principal: &Principal,
        required: &[Scope],
    ) -> Result<(), AuthRejection> {
        if !principal.is_admin() {
            return Err(auth.insufficient(&[], "Administrator access required.".to_owned()));
        }
        RequireScope::<S>::check(auth, principal, required)
    }
}

fn full_session(auth: &Authentication, principal: &Principal) -> Result<(), AuthRejection> {
    if principal.is_full_session() {
        return Ok(());
    }
    Err(auth.needs_full_session())
}
