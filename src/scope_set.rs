//! [`ScopeSet`]: scopes named by types, so each route's guard is in its signature.

use crate::scope::{Scope, ScopeError, ScopeRegistry};

/// Scopes known at compile time, for the guards (`RequireScope` and the others,
/// feature `axum`). Declare one marker type per scope with [`scopes!`](crate::scopes!);
/// a tuple of markers is the union of their scopes; `()` is no scope (the guards
/// then ask for a full session).
pub trait ScopeSet: Send + Sync + 'static {
    /// The scopes of the set, in declaration order.
    fn scopes() -> Vec<Scope>;

    /// Calls `f` with the scopes of the set. The guards call this on every
    /// request: a single marker and `()` answer from a constant, without the
    /// `Vec` of [`ScopeSet::scopes`].
    fn with_scopes<R>(f: impl FnOnce(&[Scope]) -> R) -> R
    where
        Self: Sized,
    {
        f(&Self::scopes())
    }

    /// Registers the scopes of the set, with the names and descriptions their
    /// markers declare ([`ScopeRegistry::of`]).
    fn declare(registry: &mut ScopeRegistry) -> Result<(), ScopeError>;
}

impl ScopeSet for () {
    fn scopes() -> Vec<Scope> {
        Vec::new()
    }

    fn with_scopes<R>(f: impl FnOnce(&[Scope]) -> R) -> R {
        f(&[])
    }

    fn declare(_: &mut ScopeRegistry) -> Result<(), ScopeError> {
        Ok(())
    }
}

macro_rules! tuple_scope_set {
    ($($t:ident),+) => {
        impl<$($t: ScopeSet),+> ScopeSet for ($($t,)+) {
            fn scopes() -> Vec<Scope> {
                let mut scopes = Vec::new();
                $(scopes.extend($t::scopes());)+
                scopes
            }

            fn declare(registry: &mut ScopeRegistry) -> Result<(), ScopeError> {
                $($t::declare(registry)?;)+
                Ok(())
            }
        }
    };
}

tuple_scope_set!(A);
tuple_scope_set!(A, B);
tuple_scope_set!(A, B, C);
tuple_scope_set!(A, B, C, D);
tuple_scope_set!(A, B, C, D, E);
tuple_scope_set!(A, B, C, D, E, F);
tuple_scope_set!(A, B, C, D, E, F, G);
tuple_scope_set!(A, B, C, D, E, F, G, H);

/// Declares the app's scopes, once: one marker type per scope, for the guards
/// (`RequireScope<DataRead>`) and for the registry
/// ([`ScopeRegistry::of::<(DataRead, …)>()`](crate::ScopeRegistry::of)).
///
/// Start with `set Name;` to also declare `Name`, the set of every marker in
/// the block, and make the registry from it (`ScopeRegistry::of::<Name>()`):
/// every scope a guard of these markers names is then registered by
/// construction, so no route finds an unregistered scope at its first request.
///
/// ```
/// scopegate::scopes! {
///     /// Every scope of the app.
///     pub set AppScopes;
///     pub struct DataRead = "core.data.read" { name: "Read data", description: "Read any data you can see." };
///     pub struct SettingRead = "core.setting.read" { name: "Read settings", description: "Read system settings.", admin: true };
/// }
/// let registry = scopegate::ScopeRegistry::of::<AppScopes>()?;
/// assert!(registry.contains(&DataRead::SCOPE) && registry.contains(&SettingRead::SCOPE));
/// # Ok::<(), scopegate::ScopeError>(())
/// ```
///
/// Each marker gets a `SCOPE` constant and implements [`ScopeSet`]. An invalid id
/// is a compile error where the marker is used. `name` and `description` are what
/// `GET /token/scopes` shows (the id and nothing when left out); `admin: true`
/// makes the scope one only admins may put on a key.
///
/// ```
/// scopegate::scopes! {
///     /// Read data.
///     pub struct DataRead = "core.data.read" { name: "Read data", description: "Read any data you can see." };
///     /// Write data.
///     pub struct DataWrite = "core.data.write" { name: "Write data", description: "Create and change data." };
///     /// Read settings (admins).
///     pub struct SettingRead = "core.setting.read" { name: "Read settings", description: "Read system settings.", admin: true };
/// }
/// use scopegate::ScopeSet;
/// assert_eq!(DataRead::SCOPE.as_str(), "core.data.read");
/// assert_eq!(<(DataRead, DataWrite)>::scopes().len(), 2);
/// let registry = scopegate::ScopeRegistry::of::<(DataRead, DataWrite, SettingRead)>()?;
/// assert_eq!(registry.admin_custom().count(), 1);
/// # Ok::<(), scopegate::ScopeError>(())
/// ```
#[macro_export]
macro_rules! scopes {
    // A first line `set Name;` also declares `Name`, the set of every marker
    // below: a registry made from it (`ScopeRegistry::of::<Name>()`) holds every
    // scope a guard of these markers can name.
    ($(#[$set_meta:meta])* $set_vis:vis set $set:ident;
     $($(#[$meta:meta])* $vis:vis struct $name:ident = $id:literal
        $({ name: $title:literal, description: $description:literal $(, admin: $admin:literal)? $(,)? })?;
    )+) => {
        $crate::scopes! {
            $($(#[$meta])* $vis struct $name = $id
                $({ name: $title, description: $description $(, admin: $admin)? })?;
            )+
        }

        $(#[$set_meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        $set_vis struct $set;

        impl $crate::ScopeSet for $set {
            fn scopes() -> ::std::vec::Vec<$crate::Scope> {
                ::std::vec![$($name::SCOPE),+]
            }

            fn declare(
                registry: &mut $crate::ScopeRegistry,
            ) -> ::std::result::Result<(), $crate::ScopeError> {
                $(<$name as $crate::ScopeSet>::declare(registry)?;)+
                ::std::result::Result::Ok(())
            }
        }
    };
    ($($(#[$meta:meta])* $vis:vis struct $name:ident = $id:literal
        $({ name: $title:literal, description: $description:literal $(, admin: $admin:literal)? $(,)? })?;
    )+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        $vis struct $name;

        impl $name {
            /// The scope this marker stands for.
            $vis const SCOPE: $crate::Scope = $crate::Scope::from_static($id);
        }

        impl $crate::ScopeSet for $name {
            fn scopes() -> ::std::vec::Vec<$crate::Scope> {
                ::std::vec![Self::SCOPE]
            }

            fn with_scopes<R>(f: impl ::std::ops::FnOnce(&[$crate::Scope]) -> R) -> R {
                f(&[Self::SCOPE])
            }

            fn declare(
                registry: &mut $crate::ScopeRegistry,
            ) -> ::std::result::Result<(), $crate::ScopeError> {
                #[allow(unused_mut, unused_assignments)]
                let (mut title, mut description, mut admin) = ($id, "", false);
                $(
                    title = $title;
                    description = $description;
                    $(admin = $admin;)?
                )?
                if admin {
                    registry.register_admin($id, title, description)?;
                } else {
                    registry.register($id, title, description)?;
                }
                ::std::result::Result::Ok(())
            }
        }
    )+};
}

impl ScopeRegistry {
    /// A registry of the built-ins plus the scopes the markers of `S` declare (see
    /// [`scopes!`](crate::scopes!)): the one place the app's scopes are written.
    ///
    /// ```
    /// scopegate::scopes! {
    ///     pub struct DataRead = "core.data.read" { name: "Read data", description: "Read any data you can see." };
    ///     pub struct SettingRead = "core.setting.read" { name: "Read settings", description: "Read system settings.", admin: true };
    /// }
    /// let registry = scopegate::ScopeRegistry::of::<(DataRead, SettingRead)>()?;
    /// assert!(registry.get("core.setting.read").unwrap().admin_only);
    /// # Ok::<(), scopegate::ScopeError>(())
    /// ```
    pub fn of<S: ScopeSet>() -> Result<Self, ScopeError> {
        let mut registry = Self::new();
        S::declare(&mut registry)?;
        Ok(registry)
    }
}
