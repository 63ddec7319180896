//! The conformance suite's third part: revocations of every token of a key or
//! a user, which stores make in one small write and purge afterwards, and the
//! limit on a key's live tokens. Expanded by `conformance_tests!`.

/// Expands to the bulk-revocation conformance tests for `$backend`.
#[macro_export]
macro_rules! revocation_conformance_tests {
    ($backend:ty) => {
        mod revocations {
            use chrono::TimeDelta;
            use scopegate::{store::Page, ApiKeyUpdate, Error, IssuedToken, NewApiKey, NewToken, ScopeGate, TokenRequest};

            use $crate::common::{expires_in_days, Fixture};

            type Store = <$backend as $crate::common::Backend>::Store;

            async fn fixture_with_at_most(tokens: u64) -> Fixture<Store> {
                Fixture::of_configured::<$backend>(|gate| gate.with_max_tokens_per_key(tokens))
                    .await
            }

            async fn exchange(gate: &ScopeGate, secret: &str) -> Result<IssuedToken, Error> {
                gate.exchange_api_key(secret, TokenRequest::default()).await
            }

            async fn works(gate: &ScopeGate, token: &IssuedToken) -> bool {
                gate.authenticate(token.secret.expose()).await.is_ok()
            }

            fn active(on: bool) -> ApiKeyUpdate {
                ApiKeyUpdate {
                    active: Some(on),
                    ..ApiKeyUpdate::default()
                }
            }

            #[tokio::test]
            async fn a_key_with_its_most_live_tokens_refuses_another_until_some_are_gone() {
                let f = fixture_with_at_most(3).await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let secret = key.secret.expose();
                let mut tokens = Vec::new();
                for _ in 0..3 {
                    tokens.push(exchange(&f.gate, secret).await.unwrap());
                }
                assert!(matches!(
                    exchange(&f.gate, secret).await,
                    Err(Error::TooManyTokens)
                ));
                // A revoked token makes room for one.
                f.gate.revoke_token(&tokens[0].token.id).await.unwrap();
                exchange(&f.gate, secret).await.unwrap();
                assert!(matches!(
                    exchange(&f.gate, secret).await,
                    Err(Error::TooManyTokens)
                ));
                // Deactivating the key revokes them all: none counts any more.
                f.gate.update_api_key(&key.key.id, active(false)).await.unwrap();
                f.gate.update_api_key(&key.key.id, active(true)).await.unwrap();
                for _ in 0..3 {
                    exchange(&f.gate, secret).await.unwrap();
                }
                // Expired ones count until the sweeper purges them.
                f.clock.advance(TimeDelta::days(2));
                assert!(matches!(
                    exchange(&f.gate, secret).await,
                    Err(Error::TooManyTokens)
                ));
                f.gate.purge_expired().await.unwrap();
                exchange(&f.gate, secret).await.unwrap();
                // Another key of the same owner has its own count.
                let other = f.key(&bob, NewApiKey::new("other")).await;
                exchange(&f.gate, other.secret.expose()).await.unwrap();
            }

            #[tokio::test]
            async fn revoked_tokens_wait_for_the_purge_refused_and_unlisted_and_it_removes_only_them() {
                let f = fixture_with_at_most(1_000).await;
                let (bob, carol) = (f.user("bob"), f.user("carol"));
                let busy = f.key(&bob, NewApiKey::new("busy")).await;
                let quiet = f.key(&bob, NewApiKey::new("quiet")).await;
                // More than one chunk of the purge.
                let mut revoked = Vec::new();
                for _ in 0..600 {
                    revoked.push(exchange(&f.gate, busy.secret.expose()).await.unwrap());
                }
                f.gate.update_api_key(&busy.key.id, active(false)).await.unwrap();
                f.gate.update_api_key(&busy.key.id, active(true)).await.unwrap();
                let live = vec![
                    exchange(&f.gate, busy.secret.expose()).await.unwrap(),
                    exchange(&f.gate, quiet.secret.expose()).await.unwrap(),
                    f.gate.create_token(NewToken::for_user(bob.clone())).await.unwrap(),
                    f.gate.create_token(NewToken::for_user(carol.clone())).await.unwrap(),
                ];
                let check = |when: &'static str| {
                    let (f, revoked, live, bob) = (&f, &revoked, &live, &bob);
                    async move {
                        for token in revoked {
                            assert!(!works(&f.gate, token).await, "{when}: a revoked token works");
                            let read = f.gate.token(&token.token.id).await.unwrap();
                            assert!(read.is_none(), "{when}: a revoked token is read");
                        }
                        for token in live {
                            assert!(works(&f.gate, token).await, "{when}: a live token is refused");
                        }
                        let listed = f.gate.tokens_of_user(bob, Page::new(1000, 0)).await.unwrap();
                        let mut listed: Vec<_> = listed.into_iter().map(|t| t.id).collect();
                        let mut expected: Vec<_> =
                            live[..3].iter().map(|t| t.token.id.clone()).collect();
                        listed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                        expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                        assert_eq!(listed, expected, "{when}: bob's live tokens, only");
                    }
                };
                check("before the purge").await;
                let purged = f.gate.purge_expired().await.unwrap();
                let mut removed: Vec<_> = purged.tokens.iter().map(|d| *d.as_bytes()).collect();
                let mut expected: Vec<_> = revoked.iter().map(|t| *t.token.digest.as_bytes()).collect();
                removed.sort_unstable();
                expected.sort_unstable();
                assert_eq!(removed, expected, "the purge removed the revoked tokens, only");
                check("after the purge").await;
                let again = f.gate.purge_expired().await.unwrap();
                assert!(again.tokens.is_empty(), "nothing left to purge");
            }

            #[tokio::test]
            async fn revoking_a_user_stops_their_tokens_and_not_those_made_after() {
                let f = Fixture::of::<$backend>().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let before = [
                    exchange(&f.gate, key.secret.expose()).await.unwrap(),
                    f.gate.create_token(NewToken::for_user(bob.clone())).await.unwrap(),
                ];
                f.gate.revoke_user(&bob).await.unwrap();
                let session = f.gate.create_token(NewToken::for_user(bob.clone())).await.unwrap();
                f.gate.update_api_key(&key.key.id, active(true)).await.unwrap();
                let minted = exchange(&f.gate, key.secret.expose()).await.unwrap();
                for token in &before {
                    assert!(!works(&f.gate, token).await);
                }
                f.gate.purge_expired().await.unwrap();
                assert!(works(&f.gate, &session).await);
                assert!(works(&f.gate, &minted).await);
                for token in &before {
                    assert!(!works(&f.gate, token).await);
                }
            }

            #[tokio::test]
            async fn tokens_capped_by_an_earlier_key_expiry_stay_capped_when_it_moves_later() {
                let f = Fixture::of::<$backend>().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let capped = exchange(&f.gate, key.secret.expose()).await.unwrap();
                f.gate
                    .update_api_key(&key.key.id, expires_in_days(Some(0.25)))
                    .await
                    .unwrap();
                let read = f.gate.token(&capped.token.id).await.unwrap().unwrap();
                assert!(read.expires <= capped.token.created + TimeDelta::hours(6));
                f.gate
                    .update_api_key(&key.key.id, expires_in_days(None))
                    .await
                    .unwrap();
                let after = exchange(&f.gate, key.secret.expose()).await.unwrap();
                f.clock.advance(TimeDelta::hours(7));
                assert!(!works(&f.gate, &capped).await, "the cap outlived the extension");
                assert!(works(&f.gate, &after).await, "a token after the extension is not capped");
            }

            #[tokio::test]
            async fn a_second_later_expiry_cap_never_lets_the_first_caps_tokens_outlive_it() {
                let f = Fixture::of::<$backend>().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let first = exchange(&f.gate, key.secret.expose()).await.unwrap();
                f.gate
                    .update_api_key(&key.key.id, expires_in_days(Some(0.25)))
                    .await
                    .unwrap();
                f.gate
                    .update_api_key(&key.key.id, expires_in_days(None))
                    .await
                    .unwrap();
                let second = exchange(&f.gate, key.secret.expose()).await.unwrap();
                f.gate
                    .update_api_key(&key.key.id, expires_in_days(Some(0.5)))
                    .await
                    .unwrap();
                f.clock.advance(TimeDelta::hours(5));
                assert!(works(&f.gate, &first).await && works(&f.gate, &second).await);
                f.clock.advance(TimeDelta::hours(2));
                assert!(!works(&f.gate, &first).await, "the first cap was lifted");
                f.clock.advance(TimeDelta::hours(6));
                assert!(!works(&f.gate, &second).await, "the second cap was lifted");
            }

            #[tokio::test]
            async fn a_key_stored_again_under_a_deleted_keys_id_does_not_revive_its_tokens() {
                let f = Fixture::of::<$backend>().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let token = exchange(&f.gate, key.secret.expose()).await.unwrap();
                let record = f.gate.delete_api_key(&key.key.id).await.unwrap();
                f.gate.store().insert_api_key(&record).await.unwrap();
                assert!(!works(&f.gate, &token).await);
                let read = f.gate.store().token_by_digest(&token.token.digest).await;
                assert!(read.unwrap().is_none());
                assert!(exchange(&f.gate, key.secret.expose()).await.is_ok());
            }
        }
    };
}
