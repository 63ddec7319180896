//! The app's users, as scopegate sees them.

use std::{any::Any, fmt, future::Future, pin::Pin, sync::Arc};

use crate::{credential::Credential, ids::UserId, token::Token};

/// A boxed error from the app's code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What scopegate needs to know about one of the app's users.
pub trait AuthUser: Send + Sync + 'static {
    /// Admins may use admin-only scopes and manage other users' keys.
    fn is_admin(&self) -> bool;

    /// Inactive users' keys and tokens fail like unknown ones.
    fn is_active(&self) -> bool {
        true
    }
}

/// Loads the app's users by id. The app implements it over its own user table.
///
/// Written as a plain `async fn` (no macro): the gate awaits it through one
/// boxed future of its own, so a request costs no box for the app's loader.
///
/// ```
/// use scopegate::{AuthUser, BoxError, UserId, UserLoader};
///
/// #[derive(Clone)]
/// struct User { name: String, admin: bool }
/// impl AuthUser for User {
///     fn is_admin(&self) -> bool { self.admin }
/// }
///
/// struct Users;
/// impl UserLoader for Users {
///     type User = User;
///     async fn load_user(&self, id: &UserId) -> Result<Option<User>, BoxError> {
///         Ok((id.as_str() == "alice").then(|| User { name: "alice".into(), admin: true }))
///     }
/// }
/// ```
pub trait UserLoader: Send + Sync + 'static {
    /// The app's user type.
    type User: AuthUser;

    /// The user with `id`, or `None` if there is none. An error fails closed: the
    /// request is answered "temporarily unavailable", never let through.
    ///
    /// Implement it as `async fn load_user(&self, id: &UserId) -> Result<…>`; the
    /// future must be `Send`.
    fn load_user(
        &self,
        id: &UserId,
    ) -> impl Future<Output = Result<Option<Self::User>, BoxError>> + Send;

    /// The user with `id` without waiting, if the loader can tell from memory (a
    /// table, a cache): `Some` of what [`load_user`](UserLoader::load_user) would
    /// return, or `None` to have `load_user` awaited. The default says `None`.
    ///
    /// Answering here spares a request for a cached token the boxed future of
    /// `load_user` and the shared handle to the loader it holds: with several
    /// cores serving one token, that handle's count is written from each of them.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use scopegate::{AuthUser, BoxError, UserId, UserLoader};
    ///
    /// #[derive(Clone)]
    /// struct User { admin: bool }
    /// impl AuthUser for User {
    ///     fn is_admin(&self) -> bool { self.admin }
    /// }
    ///
    /// struct Users(HashMap<String, User>);
    /// impl UserLoader for Users {
    ///     type User = User;
    ///     async fn load_user(&self, id: &UserId) -> Result<Option<User>, BoxError> {
    ///         Ok(self.0.get(id.as_str()).cloned())
    ///     }
    ///     fn load_user_now(&self, id: &UserId) -> Option<Result<Option<User>, BoxError>> {
    ///         Some(Ok(self.0.get(id.as_str()).cloned()))
    ///     }
    /// }
    /// ```
    fn load_user_now(&self, id: &UserId) -> Option<Result<Option<Self::User>, BoxError>> {
        let _ = id;
        None
    }
}

/// A user loaded for a request: id and admin flag, plus the app's own user value.
/// Cheap to clone: extractors share one.
#[derive(Clone)]
pub struct LoadedUser {
    inner: Arc<Loaded<dyn Any + Send + Sync>>,
}

/// The user and what the gate reads of it, in one allocation: `value` is last so
/// an `Arc<Loaded<L::User>>` coerces to the erased form.
struct Loaded<U: ?Sized> {
    loaded_for: LoadedFor,
    admin: bool,
    /// The loader's user type, to name it when asked for another.
    type_name: &'static str,
    value: U,
}

/// What a user was loaded for, which holds the user's id.
enum LoadedFor {
    /// The user alone, by id.
    User(UserId),
    /// A request's credential: its [`Principal`](crate::Principal) is then this
    /// allocation, not one of its own. The id is read from the credential, not
    /// cloned from it: the id's count is shared by every core serving the
    /// credential, and a clone per request would move its cache line between
    /// them.
    Credential(Credential),
}

impl LoadedUser {
    /// The user's id.
    pub fn id(&self) -> &UserId {
        match &self.inner.loaded_for {
            LoadedFor::User(id) => id,
            LoadedFor::Credential(Credential::ApiKey(key)) => &key.user_id,
            LoadedFor::Credential(Credential::Token(token)) => token
                .user_id
                .as_ref()
                .expect("a user is loaded only for a token with a user id (UserLoadFor::user)"),
        }
    }

    /// Whether the user is an admin.
    pub fn is_admin(&self) -> bool {
        self.inner.admin
    }

    /// The app's user value: `U` is the [`UserLoader::User`] type.
    ///
    /// # Panics
    /// If `U` is another type: a bug in the app, named in the message with both
    /// types, rather than a quiet `None` that reads as "no user".
    pub fn get<U: 'static>(&self) -> &U {
        self.try_get().unwrap_or_else(|| {
            panic!(
                "asked for the user as `{}`, but the UserLoader's user type is `{}`",
                std::any::type_name::<U>(),
                self.inner.type_name
            )
        })
    }

    /// The app's user value, or `None` if `U` is not the loader's user type.
    pub fn try_get<U: 'static>(&self) -> Option<&U> {
        self.inner.value.downcast_ref()
    }

    /// The credential the user was loaded for, if any (see [`UserLoadFor`]).
    pub(crate) fn credential(&self) -> Option<&Credential> {
        match &self.inner.loaded_for {
            LoadedFor::User(_) => None,
            LoadedFor::Credential(credential) => Some(credential),
        }
    }
}

impl fmt::Debug for LoadedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedUser")
            .field("id", self.id())
            .field("admin", &self.inner.admin)
            .finish_non_exhaustive()
    }
}

/// One erased user load: owns what it needs, so a caller may poll it once on the
/// spot and, if it is not done, keep it to finish later.
pub(crate) type UserLoad =
    Pin<Box<dyn Future<Output = Result<Option<LoadedUser>, BoxError>> + Send + 'static>>;

/// What a user is loaded for: the user alone, or a request's token, which then
/// shares the user's allocation.
pub(crate) enum UserLoadFor {
    /// The user alone: key management, a key's owner.
    User(UserId),
    /// A live token's user; the token holds the id.
    Token(Arc<Token>),
}

impl UserLoadFor {
    /// The id to load; `None` for an anonymous token.
    fn id(&self) -> Option<&UserId> {
        match self {
            Self::User(id) => Some(id),
            Self::Token(token) => token.user_id.as_ref(),
        }
    }

    /// `user`, loaded, if active; with the token it was loaded for.
    fn user<U: AuthUser>(self, user: U) -> Option<LoadedUser> {
        let loaded_for = match self {
            Self::User(id) => LoadedFor::User(id),
            Self::Token(token) if token.user_id.is_some() => {
                LoadedFor::Credential(Credential::Token(token))
            }
            Self::Token(_) => return None,
        };
        user.is_active().then(|| LoadedUser {
            inner: Arc::new(Loaded {
                loaded_for,
                admin: user.is_admin(),
                type_name: std::any::type_name::<U>(),
                value: user,
            }),
        })
    }
}

/// [`UserLoader`] without its associated type, so the gate needs no type parameter.
pub(crate) trait DynUserLoader: Send + Sync + 'static {
    /// The active user loaded `wanted`; `None` for unknown and inactive users alike
    /// (and for an anonymous token, which has none).
    fn load_active(self: Arc<Self>, wanted: UserLoadFor) -> UserLoad;

    /// [`DynUserLoader::load_active`]'s answer if the loader gives it without
    /// waiting ([`UserLoader::load_user_now`]); else `wanted` back, to load.
    fn load_active_now(
        &self,
        wanted: UserLoadFor,
    ) -> Result<Result<Option<LoadedUser>, BoxError>, UserLoadFor>;
}

impl<L: UserLoader> DynUserLoader for L {
    fn load_active(self: Arc<Self>, wanted: UserLoadFor) -> UserLoad {
        Box::pin(async move {
            let Some(id) = wanted.id() else {
                return Ok(None);
            };
            let user = self.load_user(id).await?;
            Ok(user.and_then(|user| wanted.user(user)))
        })
    }

    fn load_active_now(
        &self,
        wanted: UserLoadFor,
    ) -> Result<Result<Option<LoadedUser>, BoxError>, UserLoadFor> {
        let Some(id) = wanted.id() else {
            return Ok(Ok(None));
        };
        match self.load_user_now(id) {
            Some(user) => Ok(user.map(|user| user.and_then(|user| wanted.user(user)))),
            None => Err(wanted),
        }
    }
}
