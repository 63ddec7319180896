//! What every benchmark needs: a user loader that knows everyone, and scratch
//! directories on the build's disk (never a tmpfs, where syncs cost nothing).

pub(crate) mod hello;

use std::path::Path;

use scopegate::{async_trait, AuthUser, BoxError, UserId, UserLoader};

pub(crate) struct User;

impl AuthUser for User {
    fn is_admin(&self) -> bool {
        false
    }
}

/// Every user id is an active, non-admin user.
pub(crate) struct Users;

#[async_trait]
impl UserLoader for Users {
    type User = User;
    async fn load_user(&self, _: &UserId) -> Result<Option<User>, BoxError> {
        Ok(Some(User))
    }
}

/// A temporary directory under `target/`.
#[allow(dead_code)]
pub(crate) fn scratch_dir() -> tempfile::TempDir {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target).unwrap();
    tempfile::tempdir_in(target).unwrap()
}

/// The runtime of a load harness: two workers, one per core of the CI machine.
#[allow(dead_code)]
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
