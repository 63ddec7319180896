//! The scopegate lifecycle on a real sled database, end to end.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Data lives in `./scopegate-data` (`SCOPEGATE_DATA` overrides). Demo users:
//! `alice` (admin) and `bob`. The walkthrough registers Girder's scope catalogue,
//! gives bob a scoped API key, exchanges it for a token, checks scopes, and shows
//! that deactivating the key revokes the token at once.

use std::{collections::HashMap, error::Error, path::PathBuf, time::Duration};

use scopegate::{
    async_trait, ApiKeyUpdate, AuthUser, BoxError, CachingStore, NewApiKey, Scope, ScopeGate,
    ScopeRegistry, SledStore, TokenRequest, UserId, UserLoader,
};

/// The app's own user type.
#[derive(Debug, Clone)]
struct User {
    name: String,
    admin: bool,
}

impl AuthUser for User {
    fn is_admin(&self) -> bool {
        self.admin
    }
}

/// The app's user table; a real app would query its database here.
struct Users(HashMap<UserId, User>);

#[async_trait]
impl UserLoader for Users {
    type User = User;

    async fn load_user(&self, id: &UserId) -> Result<Option<User>, BoxError> {
        Ok(self.0.get(id).cloned())
    }
}

fn demo_users() -> Users {
    let user = |name: &str, admin| {
        (
            UserId::from(name),
            User {
                name: name.into(),
                admin,
            },
        )
    };
    Users(
        [user("alice", true), user("bob", false)]
            .into_iter()
            .collect(),
    )
}

/// Girder's scope catalogue.
fn girder_scopes() -> Result<ScopeRegistry, scopegate::ScopeError> {
    let mut scopes = ScopeRegistry::new();
    scopes
        .register(
            "core.user_info.read",
            "Read your user information",
            "Read your name, email and groups.",
        )?
        .register("core.data.read", "Read data", "Read any data you can see.")?
        .register(
            "core.data.write",
            "Write data",
            "Create and change data you can write.",
        )?
        .register(
            "core.data.own",
            "Data ownership",
            "Delete data and change its permissions.",
        )?
        .register_admin(
            "core.setting.read",
            "Read settings",
            "Read system settings.",
        )?
        .register_admin(
            "core.plugins.read",
            "See installed plugins",
            "List installed plugins.",
        )?;
    Ok(scopes)
}

const DATA_READ: Scope = Scope::from_static("core.data.read");
const DATA_WRITE: Scope = Scope::from_static("core.data.write");

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let data = std::env::var_os("SCOPEGATE_DATA")
        .map_or_else(|| PathBuf::from("scopegate-data"), PathBuf::from);
    let store = CachingStore::new(SledStore::open(&data)?);
    let gate = ScopeGate::builder(store, demo_users())
        .with_registry(girder_scopes()?)
        .build()?;
    let sweeper = gate.spawn_sweeper(Duration::from_secs(60));
    println!("scopegate quickstart: data in {}", data.display());

    let bob = UserId::from("bob");
    let refused = gate
        .create_api_key(
            &bob,
            NewApiKey::new("settings reader").scope(["core.setting.read"]),
        )
        .await
        .unwrap_err();
    println!("bob asks for an admin-only scope: {refused}");

    let key = gate
        .create_api_key(
            &bob,
            NewApiKey::new("nightly report")
                .scope(["core.data.read"])
                .token_duration(0.5),
        )
        .await?;
    println!(
        "bob's key {} ({}…): scope core.data.read, tokens capped at 12 h",
        key.key.id, key.key.start
    );

    let token = gate
        .exchange_api_key(
            key.secret.expose(),
            TokenRequest {
                duration: Some(30.0),
                ..Default::default()
            },
        )
        .await?;
    println!(
        "exchanged for a token expiring {} (asked 30 days, capped)",
        token
            .token
            .expires
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    let principal = gate.authenticate(token.secret.expose()).await?;
    let user = principal
        .user()
        .and_then(|u| u.get::<User>())
        .map_or("anonymous", |u| u.name.as_str());
    println!(
        "the token authenticates as {user}: core.data.read {}, core.data.write {}",
        allowed(principal.allows(&[DATA_READ])),
        allowed(principal.allows(&[DATA_WRITE])),
    );

    let off = ApiKeyUpdate {
        active: Some(false),
        ..Default::default()
    };
    gate.update_api_key(&key.key.id, off).await?;
    let after = gate.authenticate(token.secret.expose()).await;
    println!(
        "key deactivated; the same token now: {}",
        after.map_or_else(|e| e.to_string(), |_| "still valid!".into())
    );
    let again = gate
        .exchange_api_key(key.secret.expose(), TokenRequest::default())
        .await;
    println!(
        "and the key itself: {}",
        again.map_or_else(|e| e.to_string(), |_| "still mints!".into())
    );

    gate.delete_api_key(&key.key.id).await?;
    sweeper.shutdown().await;
    println!("done: key deleted, sweeper stopped.");
    Ok(())
}

fn allowed(yes: bool) -> &'static str {
    if yes {
        "allowed"
    } else {
        "denied"
    }
}
