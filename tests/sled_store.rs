//! The conformance suite on the sled store, plus sled-specific guarantees.

mod common;

conformance_tests!(crate::common::SledBackend);

use std::sync::Arc;

use common::{girder_scopes, Users};
use scopegate::{ApiKeyUpdate, Error, NewApiKey, Page, ScopeGate, SledStore, TokenRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_minted_concurrently_with_deactivation_survives_it() {
    let dir = tempfile::tempdir().unwrap();
    let users = Users::default();
    let bob = users.add("bob", false);
    let gate = ScopeGate::builder(SledStore::open(dir.path()).unwrap(), users)
        .with_registry(girder_scopes())
        .build()
        .unwrap();
    for round in 0..5 {
        let key = gate
            .create_api_key(&bob, NewApiKey::new(format!("k{round}")))
            .await
            .unwrap();
        let secret = Arc::new(key.secret.clone());
        let mut minters = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let (gate, secret) = (gate.clone(), secret.clone());
            minters.spawn(async move {
                let mut minted = Vec::new();
                for _ in 0..20 {
                    match gate
                        .exchange_api_key(secret.expose(), TokenRequest::default())
                        .await
                    {
                        Ok(token) => minted.push(token),
                        Err(Error::InvalidGrant) => break,
                        Err(other) => panic!("{other:?}"),
                    }
                }
                minted
            });
        }
        tokio::task::yield_now().await;
        let off = ApiKeyUpdate {
            active: Some(false),
            ..Default::default()
        };
        gate.update_api_key(&key.key.id, off).await.unwrap();
        let mut minted = Vec::new();
        while let Some(batch) = minters.join_next().await {
            minted.extend(batch.unwrap());
        }
        for token in &minted {
            assert!(
                gate.authenticate(token.secret.expose()).await.is_err(),
                "round {round}"
            );
        }
    }
    assert!(gate
        .tokens_of_user(&bob, Page::default())
        .await
        .unwrap()
        .is_empty());
}
