//! The request's span: around the authentication and the handler, so the app's
//! own events carry who asked, filled from the [`Authentication`] once it is
//! made. Its fields never hold a secret, a digest or a header.

use tracing::{field::Empty, level_filters::LevelFilter, Level, Span};

use super::authentication::{Authentication, Outcome, Refusal};
use crate::credential::Credential;

/// The span of a request, if a subscriber wants it. A disabled span still costs
/// a dispatcher look-up on every poll and record, and making or dropping one at
/// all costs callsite and `log` checks (tracing's `log` feature), so none is
/// made while no subscriber takes `INFO`.
pub(super) fn for_request() -> Option<Span> {
    if LevelFilter::current() < Level::INFO {
        return None;
    }
    let span = tracing::info_span!(
        "scopegate",
        credential = Empty,
        outcome = Empty,
        reason = Empty,
        user_id = Empty,
        token_id = Empty,
        api_key_id = Empty,
    );
    (!span.is_disabled()).then_some(span)
}

/// Records in `span` what `authentication` says.
pub(super) fn record(span: &Span, authentication: &Authentication) {
    match authentication.outcome() {
        Outcome::Missing => {
            span.record("credential", "none");
            span.record("outcome", "missing");
        }
        Outcome::Authenticated(principal) => {
            let credential = match principal.credential() {
                Credential::Token(_) => "token",
                Credential::ApiKey(_) => "api_key",
            };
            span.record("credential", credential);
            span.record("outcome", "authenticated");
            if let Some(id) = principal.token_id() {
                span.record("token_id", id.as_str());
            }
            if let Some(user) = principal.user_id() {
                span.record("user_id", user.as_str());
            }
            if let Some(key) = principal.api_key_id() {
                span.record("api_key_id", key.as_str());
            }
        }
        Outcome::Refused(Refusal::Malformed(message)) => {
            span.record("credential", "malformed");
            span.record("outcome", "refused");
            span.record("reason", message);
        }
        Outcome::Refused(Refusal::InvalidToken { reason, kind }) => {
            span.record("credential", kind);
            span.record("outcome", "refused");
            span.record("reason", tracing::field::debug(reason));
        }
        Outcome::Refused(Refusal::Unavailable { kind }) => {
            span.record("credential", kind);
            span.record("outcome", "unavailable");
        }
    }
}
