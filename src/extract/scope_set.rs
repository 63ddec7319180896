//! [`ScopeSet`]: scopes named by types, so each route's guard is in its signature.

use crate::Scope;

/// Scopes known at compile time, for [`RequireScope`](crate::RequireScope) and the
/// other guards. Declare one marker type per scope with [`scopes!`](crate::scopes);
/// a tuple of markers is the union of their scopes; `()` is no scope (the guards
/// then ask for a full session).
pub trait ScopeSet: Send + Sync + 'static {
    /// The scopes of the set, in declaration order.
    fn scopes() -> Vec<Scope>;
}

impl ScopeSet for () {
    fn scopes() -> Vec<Scope> {
        Vec::new()
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

/// Declares scope marker types for the guards.
///
/// Each marker gets a `SCOPE` constant and implements [`ScopeSet`]. An invalid id
/// is a compile error where the marker is used.
///
/// ```
/// scopegate::scopes! {
///     /// Read data.
///     pub struct DataRead = "core.data.read";
///     /// Write data.
///     pub struct DataWrite = "core.data.write";
/// }
/// use scopegate::ScopeSet;
/// assert_eq!(DataRead::SCOPE.as_str(), "core.data.read");
/// assert_eq!(<(DataRead, DataWrite)>::scopes().len(), 2);
/// ```
#[macro_export]
macro_rules! scopes {
    ($($(#[$meta:meta])* $vis:vis struct $name:ident = $id:literal;)+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        $vis struct $name;

        impl $name {
            /// The scope this marker stands for.
            #[allow(dead_code)]
            $vis const SCOPE: $crate::Scope = $crate::Scope::from_static($id);
        }

        impl $crate::ScopeSet for $name {
            fn scopes() -> ::std::vec::Vec<$crate::Scope> {
                ::std::vec![Self::SCOPE]
            }
        }
    )+};
}
