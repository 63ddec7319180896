//! [`Context`]: what every authentication of one [`AuthState`](crate::AuthState)
//! shares, and the per-thread copies requests hold.

use std::{
    cell::RefCell,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
};

#[cfg(doc)]
use super::Authentication;
use super::{credentials::TokenSources, registered::RegisteredSets};
use crate::{
    rejection::{AuthRejection, InvalidToken, MissingCredentials},
    scope::ScopeRegistry,
};

/// What every refusal of one [`AuthState`](crate::AuthState) says: the realm of its
/// challenges, and where it reads credentials from.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// Unique to the state that made it, and shared by its per-thread copies.
    id: u64,
    pub(crate) realm: Arc<str>,
    pub(crate) registry: Arc<ScopeRegistry>,
    /// The guards' scope sets found in `registry`, which never changes once built:
    /// a guard looks its scopes up on its first request only.
    pub(super) registered: RegisteredSets,
    /// The refusals a request without a live token gets, rendered once.
    pub(super) missing: MissingCredentials,
    pub(super) invalid_token: InvalidToken,
    pub(super) api_key: InvalidToken,
    /// Where the state reads credentials from.
    pub(crate) sources: TokenSources,
}

impl Context {
    /// The context of a state in `realm` reading from `sources`, which it keeps.
    pub(crate) fn new(realm: &str, registry: Arc<ScopeRegistry>, sources: TokenSources) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let realm: Arc<str> = realm.into();
        let missing: Arc<str> = sources.missing_message().into();
        Self {
            id: NEXT_ID.fetch_add(1, Relaxed),
            missing: MissingCredentials::prerendered(realm.clone(), missing),
            invalid_token: InvalidToken::new(realm.clone()),
            api_key: InvalidToken::api_key(realm.clone()),
            realm,
            registry,
            registered: RegisteredSets::default(),
            sources,
        }
    }

    pub(crate) fn missing_credentials(&self) -> AuthRejection {
        self.missing.clone().into()
    }

    /// This thread's copy of `context`, made on the thread's first request.
    ///
    /// Every request's [`Authentication`] holds its context. Were that one `Arc`
    /// cloned by every worker, its count's cache line would move between cores
    /// on each request; a copy per thread keeps each count in its own core's
    /// cache. A thread keeps copies for the last few states it served (an app
    /// may nest routers with states of their own), so a copy may outlive its
    /// state until then.
    pub(crate) fn local(context: &Arc<Context>) -> Arc<Context> {
        /// States whose copies one thread keeps.
        const KEPT: usize = 4;
        thread_local! {
            static LOCAL: RefCell<Vec<Arc<Context>>> = const { RefCell::new(Vec::new()) };
        }
        LOCAL
            .try_with(|local| {
                let mut local = local.try_borrow_mut().ok()?;
                if let Some(copy) = local.iter().find(|copy| copy.id == context.id) {
                    return Some(copy.clone());
                }
                if local.len() == KEPT {
                    local.remove(0);
                }
                let copy = Arc::new(Context::clone(context));
                local.push(copy.clone());
                Some(copy)
            })
            .ok()
            .flatten()
            // While the thread is being torn down: the shared one.
            .unwrap_or_else(|| context.clone())
    }
}
