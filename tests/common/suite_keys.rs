//! The conformance suite's second half: API keys sent as credentials, and the
//! throttled `last_use` of keys and tokens. Expanded by `conformance_tests!`.

/// Expands to the direct-key and `last_use` conformance tests for `$backend`.
#[macro_export]
macro_rules! direct_key_conformance_tests {
    ($backend:ty) => {
        mod direct_keys {
            use std::time::Duration;

            use chrono::{SubsecRound, TimeDelta};
            use scopegate::{store::Page, ApiKeyUpdate, Error, InvalidTokenReason, NewApiKey, NewToken, Principal, Scope};

            use $crate::common::Fixture;

            const DATA_READ: Scope = Scope::from_static("core.data.read");
            const DATA_WRITE: Scope = Scope::from_static("core.data.write");

            async fn fixture() -> Fixture<<$backend as $crate::common::Backend>::Store> {
                Fixture::of::<$backend>().await
            }

            fn refused(result: Result<Principal, Error>) -> InvalidTokenReason {
                match result {
                    Err(Error::InvalidToken(reason)) => reason,
                    other => panic!("expected invalid_token, got {other:?}"),
                }
            }

            fn change(edit: impl FnOnce(&mut ApiKeyUpdate)) -> ApiKeyUpdate {
                let mut update = ApiKeyUpdate::default();
                edit(&mut update);
                update
            }

            /// Polls until the background `last_use` writes reach `want`, then
            /// gives stray writes a moment to show up.
            async fn touches_reach<S: scopegate::store::TokenStore>(f: &Fixture<S>, want: usize) {
                for _ in 0..500 {
                    if f.probe.touches() >= want {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert_eq!(f.probe.touches(), want, "last_use writes");
            }

            #[tokio::test]
            async fn a_key_sent_directly_acts_as_its_owner_with_the_keys_scopes() {
                let f = fixture().await;
                let bob = f.user("bob");
                let scoped = f.key(&bob, NewApiKey::new("r").scope(["core.data.read"])).await;
                let p = f.gate.authenticate(scoped.secret.expose()).await.unwrap();
                assert_eq!(p.user_id(), Some(&bob));
                assert_eq!(p.api_key().map(|k| &k.id), Some(&scoped.key.id));
                assert_eq!(p.api_key_id(), Some(&scoped.key.id));
                assert!(p.token().is_none() && p.token_id().is_none());
                assert_eq!(p.scopes().iter().collect::<Vec<_>>(), [&DATA_READ]);
                assert!(p.allows(&[DATA_READ]) && !p.allows(&[DATA_WRITE]));
                assert!(!p.is_full_session());
                assert_eq!(p.expires(), None);

                let full = f.key(&bob, NewApiKey::new("full")).await;
                let p = f.gate.authenticate(full.secret.expose()).await.unwrap();
                assert!(p.is_full_session() && p.allows(&[DATA_WRITE]));
            }

            #[tokio::test]
            async fn a_key_sent_directly_is_refused_while_inactive_once_expired_or_with_its_owner_inactive(
            ) {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f
                    .key(&bob, NewApiKey::new("k").expires_in(Duration::from_secs(86_400)))
                    .await;
                let secret = key.secret.expose();
                f.gate.authenticate(secret).await.unwrap();
                let off = change(|u| u.active = Some(false));
                f.gate.update_api_key(&key.key.id, off).await.unwrap();
                assert_eq!(refused(f.gate.authenticate(secret).await), InvalidTokenReason::InactiveKey);
                let on = change(|u| u.active = Some(true));
                f.gate.update_api_key(&key.key.id, on).await.unwrap();
                f.gate.authenticate(secret).await.unwrap();
                f.users.set_active(&bob, false);
                assert_eq!(
                    refused(f.gate.authenticate(secret).await),
                    InvalidTokenReason::UserUnavailable
                );
                f.users.set_active(&bob, true);
                f.clock.advance(TimeDelta::days(1));
                assert_eq!(refused(f.gate.authenticate(secret).await), InvalidTokenReason::Expired);
            }

            #[tokio::test]
            async fn a_key_sent_directly_stops_at_once_when_rotated_without_grace_deleted_or_revoked_with_its_owner(
            ) {
                let f = fixture().await;
                let (bob, carol) = (f.user("bob"), f.user("carol"));
                let rotated = f.key(&bob, NewApiKey::new("rotated")).await;
                let deleted = f.key(&bob, NewApiKey::new("deleted")).await;
                let disabled = f.key(&bob, NewApiKey::new("disabled")).await;
                let gone = f.key(&carol, NewApiKey::new("gone")).await;
                for key in [&rotated, &deleted, &disabled, &gone] {
                    // Twice: the second is served from the cache, where there is one.
                    f.gate.authenticate(key.secret.expose()).await.unwrap();
                    f.gate.authenticate(key.secret.expose()).await.unwrap();
                }
                let new = f.gate.rotate_api_key(&rotated.key.id, Duration::ZERO).await.unwrap();
                let old = f.gate.authenticate(rotated.secret.expose()).await;
                assert_eq!(refused(old), InvalidTokenReason::Unknown);
                f.gate.authenticate(new.secret.expose()).await.unwrap();

                f.gate.delete_api_key(&deleted.key.id).await.unwrap();
                let after = f.gate.authenticate(deleted.secret.expose()).await;
                assert_eq!(refused(after), InvalidTokenReason::Unknown);

                f.gate.revoke_user(&bob).await.unwrap();
                let after = f.gate.authenticate(disabled.secret.expose()).await;
                assert_eq!(refused(after), InvalidTokenReason::InactiveKey);

                f.gate.delete_user_credentials(&carol).await.unwrap();
                let after = f.gate.authenticate(gone.secret.expose()).await;
                assert_eq!(refused(after), InvalidTokenReason::Unknown);
            }

            #[tokio::test]
            async fn a_rotated_keys_old_secret_works_directly_only_during_its_grace() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                f.gate.authenticate(key.secret.expose()).await.unwrap();
                let grace = Duration::from_secs(3600);
                let new = f.gate.rotate_api_key(&key.key.id, grace).await.unwrap();
                f.gate.authenticate(key.secret.expose()).await.unwrap();
                f.gate.authenticate(new.secret.expose()).await.unwrap();
                f.clock.advance(TimeDelta::hours(1));
                let old = f.gate.authenticate(key.secret.expose()).await;
                assert_eq!(refused(old), InvalidTokenReason::Unknown);
                f.gate.purge_expired().await.unwrap();
                let old = f.gate.authenticate(key.secret.expose()).await;
                assert_eq!(refused(old), InvalidTokenReason::Unknown);
                f.gate.authenticate(new.secret.expose()).await.unwrap();
            }

            /// An activation, as the router sends an owner's: the lock untouched.
            fn activation(active: bool, locked: Option<bool>) -> scopegate::store::KeyChange {
                scopegate::store::KeyChange::Update {
                    name: None,
                    scope: None,
                    token_duration: None,
                    active: Some(active),
                    locked,
                    expires: None,
                }
            }

            #[tokio::test]
            async fn a_locked_key_stays_inactive_through_reopening_until_its_lock_is_lifted() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let id = key.key.id.clone();
                let store = f.gate.store().clone();
                let (locked, _) = store
                    .modify_api_key(&id, &activation(false, Some(true)))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(locked.locked && !locked.active);
                let refused_now = f.gate.authenticate(key.secret.expose()).await;
                assert_eq!(refused(refused_now), InvalidTokenReason::InactiveKey);
                drop(store);
                let f = f.reopen().await;
                let store = f.gate.store().clone();
                // An activation that does not lift the lock (an owner's) leaves it off.
                let (still, _) = store
                    .modify_api_key(&id, &activation(true, None))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(still.locked && !still.active, "{still:?}");
                let refused_now = f.gate.authenticate(key.secret.expose()).await;
                assert_eq!(refused(refused_now), InvalidTokenReason::InactiveKey);
                // The app's own reactivation lifts it.
                let lifted = f
                    .gate
                    .update_api_key(&id, change(|u| u.active = Some(true)))
                    .await
                    .unwrap();
                assert!(!lifted.locked && lifted.active);
                f.gate.authenticate(key.secret.expose()).await.unwrap();
            }

            #[tokio::test]
            async fn a_scope_change_reaches_a_key_sent_directly_at_once() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k").scope(["core.data.read"])).await;
                let before = f.gate.authenticate(key.secret.expose()).await.unwrap();
                assert!(before.allows(&[DATA_READ]));
                let update = change(|u| u.scope = Some(Some(vec!["core.data.write".into()])));
                f.gate.update_api_key(&key.key.id, update).await.unwrap();
                let after = f.gate.authenticate(key.secret.expose()).await.unwrap();
                assert!(after.allows(&[DATA_WRITE]) && !after.allows(&[DATA_READ]));
            }

            #[tokio::test]
            async fn touching_moves_last_use_forward_only_and_never_revives_a_deleted_record() {
                let f = fixture().await;
                let bob = f.user("bob");
                let store = f.gate.store();
                let token = f.gate.create_token(NewToken::for_user(bob.clone())).await.unwrap();
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let (t0, t1) = (token.token.created, token.token.created + TimeDelta::minutes(5));
                store.touch_token(&token.token.id, t1).await.unwrap();
                store.touch_token(&token.token.id, t0).await.unwrap();
                let read = store.token_by_id(&token.token.id).await.unwrap().unwrap();
                assert_eq!(read.last_use, Some(t1));
                let by_digest = store.token_by_digest(&token.token.digest).await.unwrap();
                assert_eq!(by_digest.unwrap().last_use, Some(t1), "a touch is not a revocation");
                store.touch_api_key(&key.key.id, t1).await.unwrap();
                store.touch_api_key(&key.key.id, t0).await.unwrap();
                let read = store.api_key_by_id(&key.key.id).await.unwrap().unwrap();
                assert_eq!(read.last_use, Some(t1));

                f.gate.revoke_token(&token.token.id).await.unwrap();
                f.gate.delete_api_key(&key.key.id).await.unwrap();
                store.touch_token(&token.token.id, t1).await.unwrap();
                store.touch_api_key(&key.key.id, t1).await.unwrap();
                assert!(store.token_by_id(&token.token.id).await.unwrap().is_none());
                assert!(store.token_by_digest(&token.token.digest).await.unwrap().is_none());
                assert!(store.api_key_by_id(&key.key.id).await.unwrap().is_none());
            }

            #[tokio::test]
            async fn last_use_is_written_at_most_once_per_interval_and_shows_in_listings() {
                let f = fixture().await;
                let bob = f.user("bob");
                let token = f.gate.create_token(NewToken::for_user(bob.clone())).await.unwrap();
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let first = f.clock.now().trunc_subsecs(6);
                for _ in 0..20 {
                    f.gate.authenticate(token.secret.expose()).await.unwrap();
                    f.gate.authenticate(key.secret.expose()).await.unwrap();
                }
                touches_reach(&f, 2).await;
                let listed = f.gate.tokens_of_user(&bob, Page::default()).await.unwrap();
                assert_eq!(listed[0].last_use, Some(first));
                let keys = f.gate.api_keys_of_user(&bob, Page::default()).await.unwrap();
                assert_eq!(keys[0].last_use, Some(first));

                // Within the interval: still no write.
                f.clock.advance(TimeDelta::seconds(59));
                f.gate.authenticate(token.secret.expose()).await.unwrap();
                f.gate.authenticate(key.secret.expose()).await.unwrap();
                touches_reach(&f, 2).await;

                // Past it: one more each.
                f.clock.advance(TimeDelta::seconds(2));
                let later = f.clock.now().trunc_subsecs(6);
                for _ in 0..5 {
                    f.gate.authenticate(token.secret.expose()).await.unwrap();
                    f.gate.authenticate(key.secret.expose()).await.unwrap();
                }
                touches_reach(&f, 4).await;
                let listed = f.gate.tokens_of_user(&bob, Page::default()).await.unwrap();
                assert_eq!(listed[0].last_use, Some(later));
                let keys = f.gate.api_keys_of_user(&bob, Page::default()).await.unwrap();
                assert_eq!(keys[0].last_use, Some(later));
            }
        }
    };
}
