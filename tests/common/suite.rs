//! The conformance suite: every lifecycle rule, run against each store backend.
//!
//! `conformance_tests!(Backend)` expands to one test per rule, each on a fresh
//! store of that [`Backend`](super::Backend).

/// Expands to the conformance tests for the store backend `$backend`.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:ty) => {
        mod conformance {
            use std::time::Duration;

            use chrono::TimeDelta;
            use scopegate::{
                secret::{SecretCodec, SecretKind},
                store::Page,
                ApiKeyUpdate, Error, InvalidTokenReason, NewApiKey, NewToken, Scope, TokenRequest,
            };

            use $crate::common::Fixture;

            const DATA_READ: Scope = Scope::from_static("core.data.read");
            const DATA_WRITE: Scope = Scope::from_static("core.data.write");
            const SETTING_READ: Scope = Scope::from_static("core.setting.read");

            async fn fixture() -> Fixture<<$backend as $crate::common::Backend>::Store> {
                Fixture::of::<$backend>().await
            }

            fn days(token: &scopegate::Token) -> TimeDelta {
                token.expires - token.created
            }

            /// A key as the JSON body of `POST /api_key` may describe it.
            fn wire_key(edit: impl FnOnce(&mut NewApiKey)) -> NewApiKey {
                let mut key = NewApiKey::new("k");
                edit(&mut key);
                key
            }

            fn request(duration: Option<f64>, scope: Option<&[&str]>) -> TokenRequest {
                let mut request = TokenRequest::new();
                request.duration = duration;
                if let Some(scope) = scope {
                    request = request.scope(scope.iter().copied());
                }
                request
            }

            fn assert_invalid_token(
                result: Result<scopegate::Principal, Error>,
                why: InvalidTokenReason,
            ) {
                match result {
                    Err(Error::InvalidToken(reason)) => assert_eq!(reason, why),
                    other => panic!("expected invalid_token ({why:?}), got {other:?}"),
                }
            }

            // ---- Girder behaviours ----

            #[tokio::test]
            async fn two_exchanges_of_one_key_give_two_distinct_working_tokens() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let a = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                let b = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                assert_ne!(a.secret, b.secret);
                assert_ne!(a.token.id, b.token.id);
                for t in [&a, &b] {
                    let p = f.gate.authenticate(t.secret.expose()).await.unwrap();
                    assert_eq!(p.user_id(), Some(&bob));
                    assert_eq!(p.api_key_id(), Some(&key.key.id));
                }
            }

            #[tokio::test]
            async fn requested_duration_is_capped_by_the_keys_token_duration() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f
                    .key(
                        &bob,
                        NewApiKey::new("k").token_lifetime(Duration::from_secs_f64(2.0 * 86_400.0)),
                    )
                    .await;
                let secret = key.secret.expose();
                let above = f
                    .gate
                    .exchange_api_key(secret, request(Some(3.0), None))
                    .await
                    .unwrap();
                assert_eq!(days(&above.token), TimeDelta::days(2));
                let below = f
                    .gate
                    .exchange_api_key(secret, request(Some(0.5), None))
                    .await
                    .unwrap();
                assert_eq!(days(&below.token), TimeDelta::hours(12));
                let longest = f
                    .gate
                    .exchange_api_key(secret, request(Some(3650.0), None))
                    .await
                    .unwrap();
                assert_eq!(days(&longest.token), TimeDelta::days(2));
                let absurd = f
                    .gate
                    .exchange_api_key(secret, request(Some(1e300), None))
                    .await;
                assert!(matches!(absurd, Err(Error::InvalidRequest(_))));
                let unasked = f
                    .gate
                    .exchange_api_key(secret, request(None, None))
                    .await
                    .unwrap();
                assert_eq!(days(&unasked.token), TimeDelta::days(2));
            }

            #[tokio::test]
            async fn key_without_token_duration_is_capped_at_the_default_lifetime() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(Some(365.0), None))
                    .await
                    .unwrap();
                let default = TimeDelta::from_std(f.gate.token_lifetime()).unwrap();
                assert_eq!(days(&t.token), default);
            }

            #[tokio::test]
            async fn bad_requested_durations_are_invalid_requests() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                    let err = f
                        .gate
                        .exchange_api_key(key.secret.expose(), request(Some(bad), None))
                        .await
                        .unwrap_err();
                    assert!(matches!(err, Error::InvalidRequest(_)), "{bad}: {err:?}");
                }
            }

            #[tokio::test]
            async fn key_without_scope_mints_full_session_tokens() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                assert_eq!(key.key.scope, None);
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                assert_eq!(
                    t.token.scopes.iter().collect::<Vec<_>>(),
                    [&Scope::USER_AUTH]
                );
                assert!(f
                    .gate
                    .authenticate(t.secret.expose())
                    .await
                    .unwrap()
                    .is_full_session());
            }

            #[tokio::test]
            async fn deactivated_key_fails_exchange_and_its_tokens_are_gone() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                f.gate.authenticate(t.secret.expose()).await.unwrap();
                let update = ApiKeyUpdate {
                    active: Some(false),
                    ..Default::default()
                };
                let updated = f.gate.update_api_key(&key.key.id, update).await.unwrap();
                assert!(!updated.active);
                let err = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap_err();
                assert!(matches!(err, Error::InvalidGrant));
                assert_eq!(err.to_string(), "Invalid API key.");
                assert_invalid_token(
                    f.gate.authenticate(t.secret.expose()).await,
                    InvalidTokenReason::Unknown,
                );
                assert!(f.gate.token(&t.token.id).await.unwrap().is_none());
            }

            #[tokio::test]
            async fn reactivated_key_mints_again_with_its_duration_and_scopes() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f
                    .key(
                        &bob,
                        NewApiKey::new("k")
                            .scope(["core.data.read"])
                            .token_lifetime(Duration::from_secs_f64(3.0 * 86_400.0)),
                    )
                    .await;
                let off = ApiKeyUpdate {
                    active: Some(false),
                    ..Default::default()
                };
                f.gate.update_api_key(&key.key.id, off).await.unwrap();
                let on = ApiKeyUpdate {
                    active: Some(true),
                    ..Default::default()
                };
                f.gate.update_api_key(&key.key.id, on).await.unwrap();
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(Some(10.0), None))
                    .await
                    .unwrap();
                assert_eq!(days(&t.token), TimeDelta::days(3));
                assert_eq!(t.token.scopes.iter().collect::<Vec<_>>(), [&DATA_READ]);
            }

            #[tokio::test]
            async fn deleting_a_key_deletes_its_tokens() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                f.gate.authenticate(t.secret.expose()).await.unwrap();
                f.gate.delete_api_key(&key.key.id).await.unwrap();
                assert!(f.gate.api_key(&key.key.id).await.unwrap().is_none());
                assert_invalid_token(
                    f.gate.authenticate(t.secret.expose()).await,
                    InvalidTokenReason::Unknown,
                );
                assert!(f
                    .gate
                    .tokens_of_user(&bob, Page::default())
                    .await
                    .unwrap()
                    .is_empty());
                assert!(matches!(
                    f.gate.delete_api_key(&key.key.id).await,
                    Err(Error::NotFound(_))
                ));
            }

            #[tokio::test]
            async fn non_admin_cannot_put_an_admin_only_scope_on_a_key() {
                let f = fixture().await;
                let bob = f.user("bob");
                let err = f
                    .gate
                    .create_api_key(&bob, NewApiKey::new("k").scope(["core.setting.read"]))
                    .await
                    .unwrap_err();
                assert_eq!(err.to_string(), "Invalid scopes: core.setting.read.");
                assert!(f
                    .gate
                    .api_keys_of_user(&bob, Page::default())
                    .await
                    .unwrap()
                    .is_empty());
            }

            #[tokio::test]
            async fn admin_may_put_an_admin_only_scope_on_a_key() {
                let f = fixture().await;
                let alice = f.admin("alice");
                let key = f
                    .key(&alice, NewApiKey::new("k").scope(["core.setting.read"]))
                    .await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                let p = f.gate.authenticate(t.secret.expose()).await.unwrap();
                assert!(p.has_scope(&[SETTING_READ]));
                assert!(!p.is_full_session());
            }

            #[tokio::test]
            async fn a_demoted_admins_key_keeps_none_of_its_admin_only_scopes() {
                let f = fixture().await;
                let alice = f.admin("alice");
                let both = f
                    .key(
                        &alice,
                        NewApiKey::new("both").scope(["core.data.read", "core.setting.read"]),
                    )
                    .await;
                let admin_only = f
                    .key(&alice, NewApiKey::new("admin").scope(["core.setting.read"]))
                    .await;
                let direct = f.gate.authenticate(both.secret.expose()).await.unwrap();
                assert!(direct.has_scope(&[SETTING_READ]), "still an admin");
                f.users.add("alice", false);

                let t = f
                    .gate
                    .exchange_api_key(both.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                assert_eq!(t.token.scopes.iter().collect::<Vec<_>>(), [&DATA_READ]);
                let p = f.gate.authenticate(t.secret.expose()).await.unwrap();
                assert!(!p.has_scope(&[SETTING_READ]));
                let asked = f
                    .gate
                    .exchange_api_key(
                        both.secret.expose(),
                        request(None, Some(&["core.setting.read"])),
                    )
                    .await;
                assert!(matches!(asked, Err(Error::InvalidGrant)), "{asked:?}");
                let nothing_left = f
                    .gate
                    .exchange_api_key(admin_only.secret.expose(), request(None, None))
                    .await;
                assert!(
                    matches!(nothing_left, Err(Error::InvalidGrant)),
                    "{nothing_left:?}"
                );

                let direct = f.gate.authenticate(both.secret.expose()).await.unwrap();
                assert!(direct.has_scope(&[DATA_READ]));
                assert!(!direct.has_scope(&[SETTING_READ]), "demoted: {direct:?}");
            }

            #[tokio::test]
            async fn unregistered_scope_is_rejected_with_girders_message() {
                let f = fixture().await;
                let bob = f.user("bob");
                let err = f
                    .gate
                    .create_api_key(&bob, NewApiKey::new("k").scope(["nonsense"]))
                    .await
                    .unwrap_err();
                assert_eq!(err.to_string(), "Invalid scopes: nonsense.");
                let err = f
                    .gate
                    .create_api_key(
                        &bob,
                        NewApiKey::new("k").scope(["b", "core.data.read", "a"]),
                    )
                    .await
                    .unwrap_err();
                assert_eq!(err.to_string(), "Invalid scopes: a,b.");
                let err = f
                    .gate
                    .create_api_key(&bob, NewApiKey::new("k").scope(Vec::<String>::new()))
                    .await
                    .unwrap_err();
                assert!(matches!(err, Error::InvalidRequest(_)));
            }

            #[tokio::test]
            async fn exchange_narrows_scopes_but_never_widens_them() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f
                    .key(
                        &bob,
                        NewApiKey::new("k").scope(["core.data.read", "core.data.write"]),
                    )
                    .await;
                let s = key.secret.expose();
                let narrow = f
                    .gate
                    .exchange_api_key(s, request(None, Some(&["core.data.read"])))
                    .await
                    .unwrap();
                assert_eq!(narrow.token.scopes.iter().collect::<Vec<_>>(), [&DATA_READ]);
                let err = f
                    .gate
                    .exchange_api_key(s, request(None, Some(&["core.data.own"])))
                    .await
                    .unwrap_err();
                assert_eq!(err.to_string(), "Invalid scopes: core.data.own.");
                let err = f
                    .gate
                    .exchange_api_key(s, request(None, Some(&["core.user_auth"])))
                    .await
                    .unwrap_err();
                assert_eq!(err.to_string(), "Invalid scopes: core.user_auth.");
                let full = f.key(&bob, NewApiKey::new("full")).await;
                let narrowed = f
                    .gate
                    .exchange_api_key(
                        full.secret.expose(),
                        request(None, Some(&["core.data.write"])),
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    narrowed.token.scopes.iter().collect::<Vec<_>>(),
                    [&DATA_WRITE]
                );
                let err = f
                    .gate
                    .exchange_api_key(
                        full.secret.expose(),
                        request(None, Some(&["core.setting.read"])),
                    )
                    .await
                    .unwrap_err();
                assert_eq!(err.to_string(), "Invalid scopes: core.setting.read.");
            }

            #[tokio::test]
            async fn exchange_stamps_last_use() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                assert_eq!(key.key.last_use, None);
                f.clock.advance(TimeDelta::minutes(5));
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                let stored = f.gate.api_key(&key.key.id).await.unwrap().unwrap();
                assert_eq!(stored.last_use, Some(t.token.created));
            }

            #[tokio::test]
            async fn default_token_scopes_are_user_auth_for_users_and_anonymous_session_otherwise()
            {
                let f = fixture().await;
                let bob = f.user("bob");
                let session = f
                    .gate
                    .create_token(NewToken::for_user(bob.clone()))
                    .await
                    .unwrap();
                assert!(session.token.is_full_session());
                let anon = f.gate.create_token(NewToken::anonymous()).await.unwrap();
                assert_eq!(
                    anon.token.scopes.iter().collect::<Vec<_>>(),
                    [&Scope::ANONYMOUS_SESSION]
                );
                let p = f.gate.authenticate(anon.secret.expose()).await.unwrap();
                assert!(p.user().is_none());
                assert!(!p.is_admin());
            }

            #[tokio::test]
            async fn duplicate_token_scopes_are_removed() {
                let f = fixture().await;
                let bob = f.user("bob");
                let t = f
                    .gate
                    .create_token(
                        NewToken::for_user(bob).scopes([DATA_READ, DATA_READ, DATA_WRITE]),
                    )
                    .await
                    .unwrap();
                assert_eq!(t.token.scopes.len(), 2);
            }

            #[tokio::test]
            async fn added_token_scopes_persist() {
                let f = fixture().await;
                let anon = f.gate.create_token(NewToken::anonymous()).await.unwrap();
                f.gate.authenticate(anon.secret.expose()).await.unwrap();
                f.gate
                    .add_token_scopes(&anon.token.id, &[DATA_READ])
                    .await
                    .unwrap();
                let p = f.gate.authenticate(anon.secret.expose()).await.unwrap();
                assert!(p.has_scope(&[DATA_READ, Scope::ANONYMOUS_SESSION]));
            }

            // ---- Beyond Girder ----

            #[tokio::test]
            async fn malformed_or_bad_checksum_tokens_are_refused_without_a_store_read() {
                let f = fixture().await;
                let bob = f.user("bob");
                let t = f.gate.create_token(NewToken::for_user(bob)).await.unwrap();
                let mut tampered = t.secret.expose().to_string();
                let last = tampered.pop().unwrap();
                tampered.push(if last == 'a' { 'b' } else { 'a' });
                let before = f.probe.digest_reads();
                for bad in ["", "garbage", "sg_tok_short", tampered.as_str(), "sg_key_x"] {
                    assert_invalid_token(
                        f.gate.authenticate(bad).await,
                        InvalidTokenReason::Malformed,
                    );
                    let err = f
                        .gate
                        .exchange_api_key(bad, request(None, None))
                        .await
                        .unwrap_err();
                    assert!(matches!(err, Error::InvalidGrant));
                }
                assert_eq!(f.probe.digest_reads(), before);
                f.gate.authenticate(t.secret.expose()).await.unwrap();
                assert!(
                    f.probe.digest_reads() > before,
                    "the counter must see real lookups"
                );
            }

            #[tokio::test]
            async fn well_formed_unknown_token_is_invalid() {
                let f = fixture().await;
                let (stranger, _) = SecretCodec::default().generate(SecretKind::Token);
                assert_invalid_token(
                    f.gate.authenticate(stranger.expose()).await,
                    InvalidTokenReason::Unknown,
                );
            }

            #[tokio::test]
            async fn expired_token_fails_before_the_sweeper_runs() {
                let f = fixture().await;
                let bob = f.user("bob");
                let t = f
                    .gate
                    .create_token(
                        NewToken::for_user(bob.clone())
                            .lifetime(Duration::from_secs_f64(1.0 * 86_400.0)),
                    )
                    .await
                    .unwrap();
                f.gate.authenticate(t.secret.expose()).await.unwrap();
                f.clock.advance(TimeDelta::days(1));
                assert_invalid_token(
                    f.gate.authenticate(t.secret.expose()).await,
                    InvalidTokenReason::Expired,
                );
                assert!(f.gate.token(&t.token.id).await.unwrap().is_none());
                assert!(f
                    .gate
                    .tokens_of_user(&bob, Page::default())
                    .await
                    .unwrap()
                    .is_empty());
            }

            #[tokio::test]
            async fn purge_removes_only_what_expired_and_reads_only_the_expired() {
                let f = fixture().await;
                let bob = f.user("bob");
                let short = f
                    .gate
                    .create_token(
                        NewToken::for_user(bob.clone())
                            .lifetime(Duration::from_secs_f64(1.0 * 86_400.0)),
                    )
                    .await
                    .unwrap();
                let mut long = Vec::new();
                for _ in 0..20 {
                    long.push(
                        f.gate
                            .create_token(
                                NewToken::for_user(bob.clone())
                                    .lifetime(Duration::from_secs_f64(30.0 * 86_400.0)),
                            )
                            .await
                            .unwrap(),
                    );
                }
                f.clock.advance(TimeDelta::days(2));
                let purged = f.gate.purge_expired().await.unwrap();
                assert_eq!(purged.tokens, vec![short.token.digest]);
                assert_eq!(purged.examined, 1, "purge must not walk live records");
                assert!(f
                    .gate
                    .store()
                    .token_by_id(&short.token.id)
                    .await
                    .unwrap()
                    .is_none());
                for t in &long {
                    f.gate.authenticate(t.secret.expose()).await.unwrap();
                }
                assert_eq!(f.gate.purge_expired().await.unwrap().examined, 0);
            }

            #[tokio::test]
            async fn expired_key_fails_exchange_and_is_purged_with_its_tokens() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f
                    .key(
                        &bob,
                        NewApiKey::new("k")
                            .expires_in(Duration::from_secs_f64(2.0 * 86_400.0))
                            .token_lifetime(Duration::from_secs_f64(5.0 * 86_400.0)),
                    )
                    .await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                assert_eq!(
                    t.token.expires,
                    key.key.expires.unwrap(),
                    "a token never outlives its key"
                );
                f.clock.advance(TimeDelta::days(2));
                let err = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap_err();
                assert!(matches!(err, Error::InvalidGrant));
                let purged = f.gate.purge_expired().await.unwrap();
                assert_eq!(purged.api_keys, 1);
                assert_eq!(purged.tokens, vec![t.token.digest]);
                assert!(f.gate.api_key(&key.key.id).await.unwrap().is_none());
            }

            #[tokio::test]
            async fn rotated_key_keeps_its_old_secret_only_during_the_grace_period() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f
                    .key(
                        &bob,
                        NewApiKey::new("k")
                            .scope(["core.data.read"])
                            .token_lifetime(Duration::from_secs_f64(2.0 * 86_400.0)),
                    )
                    .await;
                let old_token = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                let rotated = f
                    .gate
                    .rotate_api_key(&key.key.id, Duration::from_secs(3600))
                    .await
                    .unwrap();
                assert_ne!(rotated.secret, key.secret);
                assert_eq!(rotated.key.name, "k");
                assert_eq!(rotated.key.scope, key.key.scope);
                assert_eq!(rotated.key.token_duration, Some(2.0));
                assert!(rotated.secret.expose().starts_with(&rotated.key.start));
                f.gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                f.gate
                    .exchange_api_key(rotated.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                f.gate
                    .authenticate(old_token.secret.expose())
                    .await
                    .unwrap();
                f.clock.advance(TimeDelta::hours(1));
                let err = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap_err();
                assert!(matches!(err, Error::InvalidGrant));
                f.gate
                    .exchange_api_key(rotated.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                f.gate.purge_expired().await.unwrap();
                assert!(f
                    .gate
                    .store()
                    .api_key_by_digest(&key.key.digest)
                    .await
                    .unwrap()
                    .is_none());
                f.gate
                    .exchange_api_key(rotated.secret.expose(), request(None, None))
                    .await
                    .unwrap();
            }

            /// The grace ends at `valid_until` exactly: a microsecond before, the
            /// old secret works; at it, it does not. A second rotation inside a
            /// grace keeps only the secret it replaced.
            #[tokio::test]
            async fn a_rotated_out_secret_works_until_its_exact_valid_until_and_no_later() {
                let f = fixture().await;
                let bob = f.user("bob");
                let k0 = f.key(&bob, NewApiKey::new("k")).await;
                let exchange = |secret: &scopegate::Secret| {
                    let secret = secret.expose().to_owned();
                    let gate = f.gate.clone();
                    async move { gate.exchange_api_key(&secret, request(None, None)).await }
                };
                let grace = Duration::from_secs(3600);
                let k1 = f.gate.rotate_api_key(&k0.key.id, grace).await.unwrap();
                let until = k1.key.retired.as_ref().unwrap().valid_until;
                let micros = chrono::SubsecRound::trunc_subsecs(f.clock.now(), 6);
                assert_eq!(until, micros + TimeDelta::hours(1));

                f.clock
                    .advance(until - f.clock.now() - TimeDelta::microseconds(1));
                exchange(&k0.secret).await.unwrap();
                f.gate.authenticate(k0.secret.expose()).await.unwrap();
                f.clock.advance(TimeDelta::microseconds(1));
                assert_eq!(f.clock.now(), until);
                assert!(matches!(
                    exchange(&k0.secret).await,
                    Err(Error::InvalidGrant)
                ));
                assert_invalid_token(
                    f.gate.authenticate(k0.secret.expose()).await,
                    InvalidTokenReason::Unknown,
                );
                exchange(&k1.secret).await.unwrap();

                // Inside k1's grace, rotate again: k1 is kept, k0 never comes back.
                let k2 = f.gate.rotate_api_key(&k0.key.id, grace).await.unwrap();
                f.clock.advance(TimeDelta::minutes(30));
                exchange(&k1.secret).await.unwrap();
                let k3 = f.gate.rotate_api_key(&k0.key.id, grace).await.unwrap();
                assert!(matches!(
                    exchange(&k1.secret).await,
                    Err(Error::InvalidGrant)
                ));
                assert!(matches!(
                    exchange(&k0.secret).await,
                    Err(Error::InvalidGrant)
                ));
                exchange(&k2.secret).await.unwrap();
                exchange(&k3.secret).await.unwrap();
            }

            #[tokio::test]
            async fn rotation_without_grace_stops_the_old_secret_and_its_tokens_at_once() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                f.gate.authenticate(t.secret.expose()).await.unwrap();
                let rotated = f
                    .gate
                    .rotate_api_key(&key.key.id, Duration::ZERO)
                    .await
                    .unwrap();
                assert!(matches!(
                    f.gate
                        .exchange_api_key(key.secret.expose(), request(None, None))
                        .await,
                    Err(Error::InvalidGrant)
                ));
                assert_invalid_token(
                    f.gate.authenticate(t.secret.expose()).await,
                    InvalidTokenReason::Unknown,
                );
                f.gate
                    .exchange_api_key(rotated.secret.expose(), request(None, None))
                    .await
                    .unwrap();
            }

            #[tokio::test]
            async fn revoking_a_token_is_immediate_even_after_it_was_read() {
                let f = fixture().await;
                let bob = f.user("bob");
                let t = f.gate.create_token(NewToken::for_user(bob)).await.unwrap();
                f.gate.authenticate(t.secret.expose()).await.unwrap();
                f.gate.revoke_token(&t.token.id).await.unwrap();
                assert_invalid_token(
                    f.gate.authenticate(t.secret.expose()).await,
                    InvalidTokenReason::Unknown,
                );
                assert!(matches!(
                    f.gate.revoke_token(&t.token.id).await,
                    Err(Error::NotFound(_))
                ));
            }

            #[tokio::test]
            async fn scope_change_revokes_the_keys_tokens() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f
                    .key(
                        &bob,
                        NewApiKey::new("k").scope(["core.data.read", "core.data.write"]),
                    )
                    .await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                f.gate.authenticate(t.secret.expose()).await.unwrap();
                let update = ApiKeyUpdate {
                    scope: Some(Some(vec!["core.data.read".into()])),
                    ..Default::default()
                };
                f.gate.update_api_key(&key.key.id, update).await.unwrap();
                assert_invalid_token(
                    f.gate.authenticate(t.secret.expose()).await,
                    InvalidTokenReason::Unknown,
                );
            }

            #[tokio::test]
            async fn revoke_user_deletes_tokens_and_deactivates_keys_in_one_call() {
                let f = fixture().await;
                let bob = f.user("bob");
                let carol = f.user("carol");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let minted = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                let session = f
                    .gate
                    .create_token(NewToken::for_user(bob.clone()))
                    .await
                    .unwrap();
                let other = f
                    .gate
                    .create_token(NewToken::for_user(carol))
                    .await
                    .unwrap();
                f.gate.authenticate(session.secret.expose()).await.unwrap();
                f.gate.revoke_user(&bob).await.unwrap();
                for t in [&minted, &session] {
                    assert_invalid_token(
                        f.gate.authenticate(t.secret.expose()).await,
                        InvalidTokenReason::Unknown,
                    );
                    assert!(f.gate.token(&t.token.id).await.unwrap().is_none());
                }
                let listed = f.gate.tokens_of_user(&bob, Page::default()).await.unwrap();
                assert!(listed.is_empty(), "revoked tokens are not listed");
                assert!(!f.gate.api_key(&key.key.id).await.unwrap().unwrap().active);
                assert!(matches!(
                    f.gate
                        .exchange_api_key(key.secret.expose(), request(None, None))
                        .await,
                    Err(Error::InvalidGrant)
                ));
                f.gate.authenticate(other.secret.expose()).await.unwrap();
                f.gate.delete_user_credentials(&bob).await.unwrap();
                assert!(f.gate.api_key(&key.key.id).await.unwrap().is_none());
            }

            #[tokio::test]
            async fn inactive_or_missing_owner_invalidates_keys_and_tokens() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                f.users.set_active(&bob, false);
                assert_invalid_token(
                    f.gate.authenticate(t.secret.expose()).await,
                    InvalidTokenReason::UserUnavailable,
                );
                assert!(matches!(
                    f.gate
                        .exchange_api_key(key.secret.expose(), request(None, None))
                        .await,
                    Err(Error::InvalidGrant)
                ));
                f.users.set_active(&bob, true);
                f.gate.authenticate(t.secret.expose()).await.unwrap();
                f.users.remove(&bob);
                assert_invalid_token(
                    f.gate.authenticate(t.secret.expose()).await,
                    InvalidTokenReason::UserUnavailable,
                );
                let refused = f.gate.create_api_key(&bob, NewApiKey::new("k2")).await;
                assert!(
                    matches!(refused, Err(Error::InvalidRequest(_))),
                    "{refused:?}"
                );
            }

            #[tokio::test]
            async fn failing_user_loader_fails_closed() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                f.users.set_failing(true);
                assert!(matches!(
                    f.gate.authenticate(t.secret.expose()).await,
                    Err(Error::UserLoader(_))
                ));
                assert!(matches!(
                    f.gate
                        .exchange_api_key(key.secret.expose(), request(None, None))
                        .await,
                    Err(Error::UserLoader(_))
                ));
            }

            #[tokio::test]
            async fn store_refuses_duplicate_tokens_and_mints_from_inactive_keys() {
                let f = fixture().await;
                let bob = f.user("bob");
                let issued = f
                    .gate
                    .create_token(NewToken::for_user(bob.clone()))
                    .await
                    .unwrap();
                let err = f
                    .gate
                    .store()
                    .insert_token(&issued.token)
                    .await
                    .unwrap_err();
                assert_eq!(err.kind(), scopegate::store::StoreErrorKind::Conflict);

                let key = f.key(&bob, NewApiKey::new("k").active(false)).await;
                let (_, digest) = SecretCodec::default().generate(SecretKind::Token);
                let mut token = issued.token.clone();
                token.id = scopegate::TokenId::from("minted-from-inactive");
                token.digest = digest;
                token.api_key_id = Some(key.key.id.clone());
                assert!(!f
                    .gate
                    .store()
                    .mint_token(&token, &key.key.digest, u64::MAX)
                    .await
                    .unwrap());
                assert!(f
                    .gate
                    .store()
                    .token_by_digest(&digest)
                    .await
                    .unwrap()
                    .is_none());
                assert_eq!(
                    f.gate.api_key(&key.key.id).await.unwrap().unwrap().last_use,
                    None
                );
            }

            /// The exchange read the key with {read, write} and no expiry; a
            /// narrowing, then an expiry cap, committed before its mint: the mint
            /// stores nothing either change would have revoked.
            #[tokio::test]
            async fn a_mint_after_a_scope_narrowing_or_expiry_cap_stores_nothing_wider() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f
                    .key(
                        &bob,
                        NewApiKey::new("k").scope(["core.data.read", "core.data.write"]),
                    )
                    .await;
                let minted = |name: &str, scopes: &[Scope], expires_in: TimeDelta| {
                    let (_, digest) = SecretCodec::default().generate(SecretKind::Token);
                    let created = f.clock.now();
                    let mut token = scopegate::Token::new(
                        scopegate::TokenId::from(name),
                        digest,
                        created,
                        created + expires_in,
                    );
                    token.user_id = Some(bob.clone());
                    token.scopes = scopes.iter().cloned().collect();
                    token.api_key_id = Some(key.key.id.clone());
                    token
                };
                let store = f.gate.store();
                let read_write = minted("read-write", &[DATA_READ, DATA_WRITE], TimeDelta::days(1));
                assert!(store
                    .mint_token(&read_write, &key.key.digest, u64::MAX)
                    .await
                    .unwrap());

                let narrow = ApiKeyUpdate {
                    scope: Some(Some(vec!["core.data.read".into()])),
                    ..ApiKeyUpdate::default()
                };
                f.gate.update_api_key(&key.key.id, narrow).await.unwrap();
                let stale = minted("stale-scope", &[DATA_READ, DATA_WRITE], TimeDelta::days(1));
                assert!(!store
                    .mint_token(&stale, &key.key.digest, u64::MAX)
                    .await
                    .unwrap());
                assert_eq!(store.token_by_digest(&stale.digest).await.unwrap(), None);
                let read = minted("read", &[DATA_READ], TimeDelta::days(1));
                assert!(store
                    .mint_token(&read, &key.key.digest, u64::MAX)
                    .await
                    .unwrap());

                let cap = ApiKeyUpdate {
                    expires_in_days: Some(Some(0.5)),
                    ..ApiKeyUpdate::default()
                };
                f.gate.update_api_key(&key.key.id, cap).await.unwrap();
                let outliving = minted("outliving", &[DATA_READ], TimeDelta::days(1));
                assert!(!store
                    .mint_token(&outliving, &key.key.digest, u64::MAX)
                    .await
                    .unwrap());
                assert_eq!(
                    store.token_by_digest(&outliving.digest).await.unwrap(),
                    None
                );
                let within = minted("within", &[DATA_READ], TimeDelta::hours(6));
                assert!(store
                    .mint_token(&within, &key.key.digest, u64::MAX)
                    .await
                    .unwrap());
            }

            #[tokio::test]
            async fn failing_store_fails_closed_and_loses_nothing() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("k")).await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                f.probe.set_failing(true);
                assert!(matches!(
                    f.gate
                        .exchange_api_key(key.secret.expose(), request(None, None))
                        .await,
                    Err(Error::Store(_))
                ));
                assert!(matches!(
                    f.gate.create_api_key(&bob, NewApiKey::new("k2")).await,
                    Err(Error::Store(_))
                ));
                let off = ApiKeyUpdate {
                    active: Some(false),
                    ..Default::default()
                };
                assert!(matches!(
                    f.gate.update_api_key(&key.key.id, off).await,
                    Err(Error::Store(_))
                ));
                f.probe.set_failing(false);
                f.gate.authenticate(t.secret.expose()).await.unwrap();
                assert!(f.gate.api_key(&key.key.id).await.unwrap().unwrap().active);
                assert_eq!(
                    f.gate
                        .api_keys_of_user(&bob, Page::default())
                        .await
                        .unwrap()
                        .len(),
                    1
                );
            }

            #[tokio::test]
            async fn key_fields_are_validated_and_nothing_is_stored_on_error() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("  padded  ")).await;
                assert_eq!(key.key.name, "padded");
                for bad in [
                    NewApiKey::new("   "),
                    NewApiKey::new("k").token_lifetime(Duration::ZERO),
                    NewApiKey::new("k").token_lifetime(Duration::from_secs(3651 * 86_400)),
                    // What JSON may carry, beyond what a `Duration` can say.
                    wire_key(|k| k.token_duration = Some(-2.0)),
                    wire_key(|k| k.token_duration = Some(f64::NAN)),
                    wire_key(|k| k.expires_in_days = Some(f64::INFINITY)),
                ] {
                    let err = f.gate.create_api_key(&bob, bad.clone()).await.unwrap_err();
                    assert!(matches!(err, Error::InvalidRequest(_)), "{bad:?}: {err:?}");
                }
                assert_eq!(
                    f.gate
                        .api_keys_of_user(&bob, Page::default())
                        .await
                        .unwrap()
                        .len(),
                    1
                );
            }

            #[tokio::test]
            async fn partial_update_changes_only_what_is_given() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f
                    .key(
                        &bob,
                        NewApiKey::new("k")
                            .scope(["core.data.read"])
                            .token_lifetime(Duration::from_secs_f64(2.0 * 86_400.0)),
                    )
                    .await;
                let renamed = f
                    .gate
                    .update_api_key(
                        &key.key.id,
                        ApiKeyUpdate {
                            name: Some(" new ".into()),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!(renamed.name, "new");
                assert_eq!(renamed.scope, key.key.scope);
                assert_eq!(renamed.token_duration, Some(2.0));
                assert!(renamed.active);
                let full = f
                    .gate
                    .update_api_key(
                        &key.key.id,
                        ApiKeyUpdate {
                            scope: Some(None),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!(full.scope, None);
                assert_eq!(full.name, "new");
                let bad = ApiKeyUpdate {
                    token_duration: Some(Some(-1.0)),
                    name: Some("x".into()),
                    ..Default::default()
                };
                let refused = f.gate.update_api_key(&key.key.id, bad).await;
                assert!(
                    matches!(refused, Err(Error::InvalidRequest(_))),
                    "{refused:?}"
                );
                assert_eq!(
                    f.gate.api_key(&key.key.id).await.unwrap().unwrap().name,
                    "new"
                );
                let unknown = scopegate::ApiKeyId::from("no-such-key");
                assert!(matches!(
                    f.gate
                        .update_api_key(&unknown, ApiKeyUpdate::default())
                        .await,
                    Err(Error::NotFound(_))
                ));
            }

            #[tokio::test]
            async fn keys_are_listed_per_user_oldest_first_with_limit_and_offset() {
                let f = fixture().await;
                let bob = f.user("bob");
                let carol = f.user("carol");
                for i in 0..5 {
                    f.key(&bob, NewApiKey::new(format!("k{i}"))).await;
                    f.clock.advance(TimeDelta::seconds(1));
                }
                f.key(&carol, NewApiKey::new("carol's")).await;
                let names = |keys: Vec<scopegate::ApiKey>| {
                    keys.into_iter().map(|k| k.name).collect::<Vec<_>>()
                };
                assert_eq!(
                    names(
                        f.gate
                            .api_keys_of_user(&bob, Page::new(2, 1))
                            .await
                            .unwrap()
                    ),
                    ["k1", "k2"]
                );
                assert_eq!(
                    names(
                        f.gate
                            .api_keys_of_user(&bob, Page::new(50, 4))
                            .await
                            .unwrap()
                    ),
                    ["k4"]
                );
                assert_eq!(
                    names(
                        f.gate
                            .api_keys_of_user(&carol, Page::default())
                            .await
                            .unwrap()
                    ),
                    ["carol's"]
                );
            }

            #[tokio::test]
            async fn credentials_created_within_one_millisecond_are_listed_oldest_first() {
                let f = fixture().await;
                let bob = f.user("bob");
                // To the start of the next millisecond, then a microsecond apart.
                let into_ms = i64::from(f.clock.now().timestamp_subsec_nanos()) % 1_000_000;
                f.clock.advance(TimeDelta::nanoseconds(1_000_000 - into_ms));
                let (mut keys, mut tokens) = (Vec::new(), Vec::new());
                for i in 0..8 {
                    keys.push(f.key(&bob, NewApiKey::new(format!("k{i}"))).await.key.id);
                    let token = f.gate.create_token(NewToken::for_user(bob.clone()));
                    tokens.push(token.await.unwrap().token.id);
                    f.clock.advance(TimeDelta::microseconds(1));
                }
                let page = Page::new(50, 0);
                let listed = f.gate.api_keys_of_user(&bob, page).await.unwrap();
                assert_eq!(listed.into_iter().map(|k| k.id).collect::<Vec<_>>(), keys);
                let listed = f.gate.tokens_of_user(&bob, page).await.unwrap();
                assert_eq!(listed.into_iter().map(|t| t.id).collect::<Vec<_>>(), tokens);
            }

            #[tokio::test]
            async fn records_survive_reopening_the_database() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f
                    .key(&bob, NewApiKey::new("k").scope(["core.data.read"]))
                    .await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                let revoked = f
                    .gate
                    .create_token(NewToken::for_user(bob.clone()))
                    .await
                    .unwrap();
                f.gate.revoke_token(&revoked.token.id).await.unwrap();
                let f = f.reopen().await;
                let p = f.gate.authenticate(t.secret.expose()).await.unwrap();
                assert_eq!(p.scopes().iter().collect::<Vec<_>>(), [&DATA_READ]);
                assert_invalid_token(
                    f.gate.authenticate(revoked.secret.expose()).await,
                    InvalidTokenReason::Unknown,
                );
                f.gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                assert_eq!(
                    f.gate.api_key(&key.key.id).await.unwrap().unwrap().name,
                    "k"
                );
            }

            #[tokio::test]
            async fn no_plaintext_secret_reaches_the_database_files() {
                let f = fixture().await;
                let bob = f.user("bob");
                let key = f.key(&bob, NewApiKey::new("findable-key-name")).await;
                let t = f
                    .gate
                    .exchange_api_key(key.secret.expose(), request(None, None))
                    .await
                    .unwrap();
                let f = f.reopen().await;
                let bytes = f.stored_bytes().await;
                let contains =
                    |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
                assert!(
                    contains("findable-key-name"),
                    "the scan must see what the store wrote"
                );
                assert!(!contains(key.secret.expose()));
                assert!(!contains(t.secret.expose()));
            }
        }

        $crate::direct_key_conformance_tests!($backend);
        $crate::revocation_conformance_tests!($backend);
    };
}

/// Every byte of every file under `dir`.
pub fn read_all(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(read_all(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}
