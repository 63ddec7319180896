//! A revocation holds however its request ends: each revoking operation's caller
//! is dropped at every store call's park points in turn, on sled with and
//! without the cache (PostgreSQL's run in `postgres_store.rs`).

mod common;

cancellation_tests!(crate::common::cancellation::SledReal);

mod forced_races {
    //! A lookup whose store read came before a revocation, and whose cache insert
    //! comes after it, is forced into that order by parking the read.

    use scopegate::{store::SledStore, ApiKeyUpdate, Error, NewApiKey, NewToken, ScopeGate};

    use crate::common::{
        girder_scopes,
        parking::{parking_with, Feed},
        refused, Users,
    };

    /// A gate over a cache over a parked sled store (its feed hidden, so the cache
    /// alone must get the order right).
    fn gate() -> (ScopeGate, crate::common::parking::Parks, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let (parking, parks) = parking_with(SledStore::open(dir.path()).unwrap(), Feed::Hidden);
        let users = Users::default();
        users.add("bob", false);
        let gate = ScopeGate::builder(parking, users)
            .with_registry(girder_scopes())
            .with_direct_api_keys()
            .without_last_use()
            .build()
            .unwrap();
        (gate, parks, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_read_before_its_revocation_is_never_served_after_it() {
        let (gate, parks, _dir) = gate();
        let token = gate
            .create_token(NewToken::for_user("bob".into()))
            .await
            .unwrap();
        let secret = token.secret.expose();
        // Point 1: the lookup's store read has returned the live token; its
        // cache insert has not happened yet.
        let lookup = gate.authenticate(secret);
        let revoke = || async {
            gate.revoke_token(&token.token.id).await.unwrap();
        };
        let outcome = parks.pause_at(1, lookup, revoke).await;
        assert!(
            refused(outcome),
            "accepted after its revocation was acknowledged"
        );
        for _ in 0..3 {
            assert!(
                refused(gate.authenticate(secret).await),
                "served from the cache"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_read_before_its_deactivation_is_never_served_after_it() {
        let (gate, parks, _dir) = gate();
        let off = ApiKeyUpdate {
            active: Some(false),
            ..ApiKeyUpdate::default()
        };
        // A key load reads the key once, after reading the revocation epoch:
        // point 0 is before the read, point 1 after it.
        for point in [0, 1] {
            let key = gate
                .create_api_key(&"bob".into(), NewApiKey::new("k"))
                .await
                .unwrap();
            let secret = key.secret.expose();
            let lookup = gate.authenticate(secret);
            let deactivate = || async {
                gate.update_api_key(&key.key.id, off.clone()).await.unwrap();
            };
            let outcome = parks.pause_at(point, lookup, deactivate).await;
            assert!(
                matches!(outcome, Err(Error::InvalidToken(_))),
                "point {point}: accepted after the deactivation was acknowledged: {outcome:?}"
            );
            for _ in 0..3 {
                assert!(
                    refused(gate.authenticate(secret).await),
                    "point {point}: cached"
                );
            }
        }
    }
}
