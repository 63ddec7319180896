//! Finding the one credential a request carries.
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use subtle::ConstantTimeEq;

/// Where the layer looks for a token, in this order. `Authorization: Bearer` is
/// always read; the others are off unless configured.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenSources {
    pub(crate) header: Option<HeaderName>,
    pub(crate) cookie: Option<String>,
    pub(crate) query: Option<String>,
}

/// Why a request's credentials are malformed: the message for the caller.
pub(crate) type Malformed = &'static str;

const MALFORMED_BEARER: Malformed =
    "Malformed Authorization header: expected `Bearer <token>`, one space, no other whitespace.";
const NOT_ASCII: Malformed = "Credentials must be printable ASCII.";
const SEVERAL_AUTHORIZATION: Malformed = "Send one Authorization header, not several.";
const SEVERAL_CREDENTIALS: Malformed =
    "Send one credential per request, not several different ones.";
const MALFORMED_VALUE: Malformed = "Malformed token: empty, or a character a token cannot hold.";
const QUERY_ON_UNSAFE_METHOD: Malformed =
    "A token in the URL is accepted on GET and HEAD requests \
     only: URLs are logged. Send it in the Authorization header.";

impl TokenSources {
    /// The 401's message for a request without credentials, naming each
    /// source read.
    pub(crate) fn missing_message(&self) -> String {
        let mut places = vec!["`Authorization: Bearer <token>`".to_owned()];
        if let Some(name) = &self.header {
            places.push(format!("the `{name}` header"));
        }
        if let Some(name) = &self.cookie {
            places.push(format!("the `{name}` cookie"));
        }
        if let Some(name) = &self.query {
            places.push(format!("the `{name}` query parameter"));
        }
        let last = places.pop().unwrap_or_default();
        let list = match places.is_empty() {
            true => last,
            false => format!("{} or {last}", places.join(", ")),
        };
        format!("Authentication required: send a token in {list}.")
    }

    /// Whether the request has a token in the query parameter, if one is read.
    #[cfg(feature = "router")] // used by the router
    pub(crate) fn in_query(&self, uri: &Uri) -> bool {
        self.query
            .as_ref()
            .is_some_and(|name| query_values(uri, name).next().is_some())
    }

    /// Whether the request has the token cookie, if one is read: a browser may
    /// have attached it to a request another site made.
    #[cfg(feature = "router")] // used by the router
    pub(crate) fn in_cookie(&self, headers: &HeaderMap) -> bool {
        self.cookie
            .as_ref()
            .is_some_and(|name| cookies(headers, name).next().is_some())
    }

    /// [`TokenSources::find`], except that a lone `Authorization: Bearer` token
    /// is not checked against RFC 6750's `b64token` syntax. Every secret the gate's
    /// format check passes is a `b64token`, so only a credential the gate refuses
    /// as malformed needs [`is_b64token`] (and, if that fails, [`malformed_bearer`]
    /// for `find`'s message).
    pub(crate) fn find_unchecked<'a>(
        &self,
        method: &Method,
        headers: &'a HeaderMap,
        uri: &'a Uri,
    ) -> Result<Option<&'a [u8]>, Malformed> {
        if self.header.is_some() || self.cookie.is_some() || self.query.is_some() {
            return self.find(method, headers, uri);
        }
        bearer(headers, Syntax::LeftToTheGate)
    }

    /// The credential of the request, borrowed from it: `None` if there is none;
    /// an error if it is malformed, if the request carries several different
    /// ones, or if a token in the query comes with a method that may change
    /// state (a form's `POST` would otherwise carry it into access logs and
    /// `Referer` headers on the very routes that change things).
    pub(crate) fn find<'a>(
        &self,
        method: &Method,
        headers: &'a HeaderMap,
        uri: &'a Uri,
    ) -> Result<Option<&'a [u8]>, Malformed> {
        let mut found = Found::default();
        found.add(bearer(headers, Syntax::Checked)?)?;
        if let Some(name) = &self.header {
            found.add(single_header(headers, name)?)?;
        }
        if let Some(name) = &self.cookie {
            for value in cookies(headers, name) {
                found.add(Some(token_value(value?)?))?;
            }
        }
        if let Some(name) = &self.query {
            for value in query_values(uri, name) {
                if !matches!(*method, Method::GET | Method::HEAD) {
                    return Err(QUERY_ON_UNSAFE_METHOD);
                }
                found.add(Some(token_value(value)?))?;
            }
        }
        Ok(found.first)
    }
}

/// The credential found so far; any other must be the same.
#[derive(Default)]
struct Found<'a> {
    first: Option<&'a [u8]>,
}

impl<'a> Found<'a> {
    fn add(&mut self, value: Option<&'a [u8]>) -> Result<(), Malformed> {
        match (self.first, value) {
            (_, None) => Ok(()),
            (None, Some(value)) => {
                self.first = Some(value);
                Ok(())
            }
            (Some(first), Some(other)) if bool::from(first.ct_eq(other)) => Ok(()),
            (Some(_), Some(_)) => Err(SEVERAL_CREDENTIALS),
        }
    }
}

/// Whether [`bearer`] checks the token's RFC 6750 syntax.
#[derive(Clone, Copy, PartialEq)]
enum Syntax {
    Checked,
    /// For [`TokenSources::find_unchecked`].
    LeftToTheGate,
}

/// The token of the `Authorization: Bearer` header; other schemes (`Basic`) are not ours.
/// Inlined into each caller, so `syntax` is a constant there and its test
/// disappears from the request path.
#[inline(always)]
fn bearer(headers: &HeaderMap, syntax: Syntax) -> Result<Option<&[u8]>, Malformed> {
    let Some(value) = single_value(headers, &header::AUTHORIZATION, SEVERAL_AUTHORIZATION)? else {
        return Ok(None);
    };
    // The common case, `Bearer <b64token>`, in one pass over the bytes.
    let token = bearer_token(value.as_bytes())
        .filter(|token| syntax == Syntax::LeftToTheGate || is_b64token(token));
    match token {
        Some(token) => Ok(Some(token)),
        None => bearer_by_general_rules(value),
    }
}

/// What follows `Bearer ` (the scheme in any case, one space), if anything does.
fn bearer_token(bytes: &[u8]) -> Option<&[u8]> {
    let head = bytes.get(..BEARER.len())?;
    let token = &bytes[BEARER.len()..];
    (head.eq_ignore_ascii_case(BEARER) && !token.is_empty()).then_some(token)
}

/// An `Authorization` value by the general rules, which name what is wrong: the
/// token of a `Bearer` value, `None` for another scheme.
#[cold]
fn bearer_by_general_rules(value: &HeaderValue) -> Result<Option<&[u8]>, Malformed> {
    let value_str = value.to_str().map_err(|_| NOT_ASCII)?;
    let scheme_end = value_str.find([' ', '\t']).unwrap_or(value_str.len());
    let (scheme, rest) = value_str.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.strip_prefix(' ').ok_or(MALFORMED_BEARER)?;
    token_value(token).map(Some).map_err(|_| MALFORMED_BEARER)
}

/// What is wrong with `token`, the `Bearer` token [`TokenSources::find_unchecked`]
/// passed without checking its syntax, as [`TokenSources::find`] would say: it
/// comes from a header value that was `Bearer ` and one space, so only its own
/// bytes can be wrong.
#[cold]
pub(crate) fn malformed_bearer(token: &[u8]) -> Malformed {
    // `bearer_by_general_rules` refuses what `HeaderValue::to_str` refuses as
    // not ASCII; the header's `Bearer ` head is ASCII, so only the token decides.
    match HeaderValue::from_bytes(token).map(|value| value.to_str().is_ok()) {
        Ok(true) => MALFORMED_BEARER,
        _ => NOT_ASCII,
    }
}

/// The scheme and its one space, compared without regard to case.
const BEARER: &[u8] = b"bearer ";

/// Whether `bytes` are one RFC 6750 `b64token`.
pub(crate) fn is_b64token(bytes: &[u8]) -> bool {
    b64token(bytes).is_some()
}

/// `bytes` if they are one RFC 6750 `b64token`: at least one of
/// `A-Z a-z 0-9 - . _ ~ + /`, then any number of `=`. Such bytes are ASCII, so
/// the credential stays bytes from here on: no pass to make it a `str`.
fn b64token(bytes: &[u8]) -> Option<&[u8]> {
    let body_len = bytes.len() - bytes.iter().rev().take_while(|&&b| b == b'=').count();
    // Without an early exit: a branch-free pass over a short token is cheaper than
    // a test and branch per byte, and a bad byte costs the same.
    let valid = body_len > 0
        && bytes[..body_len]
            .iter()
            .fold(0, |refused, &b| refused | NOT_B64TOKEN[usize::from(b)])
            == 0;
    valid.then_some(bytes)
}

/// 1 for each byte a `b64token`'s body may not hold, 0 for the rest
/// (`A-Z a-z 0-9 - . _ ~ + /`): or-ing bytes' entries is one instruction each.
const NOT_B64TOKEN: [u8; 256] = {
    let mut table = [1; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/') {
            table[b] = 0;
        }
        b += 1;
    }
    table
};

/// The value of a custom token header such as `X-Api-Token`.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a [u8]>, Malformed> {
    let Some(value) = single_value(headers, name, SEVERAL_CREDENTIALS)? else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| NOT_ASCII)?;
    token_value(value).map(Some)
}

/// The one value of header `name`; `several` if the request repeats the header.
fn single_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    several: Malformed,
) -> Result<Option<&'a HeaderValue>, Malformed> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(several);
    }
    Ok(Some(value))
}

/// A token as sent: RFC 6750's `b64token` (`A-Z a-z 0-9 - . _ ~ + /`, then `=`s).
fn token_value(value: &str) -> Result<&[u8], Malformed> {
    b64token(value.as_bytes()).ok_or(MALFORMED_VALUE)
}

/// Every value of cookie `name` across the `Cookie` headers.
fn cookies<'a, 'n>(
    headers: &'a HeaderMap,
    name: &'n str,
) -> impl Iterator<Item = Result<&'a str, Malformed>> + use<'a, 'n> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(move |value| {
            let pairs: Vec<Result<&str, Malformed>> = match value.to_str() {
                Err(_) => vec![Err(NOT_ASCII)],
                Ok(value) => value
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .filter(|(n, _)| *n == name)
                    .map(|(_, v)| Ok(v.trim_matches('"')))
                    .collect(),
            };
            pairs
        })
}

/// Every raw value of query parameter `name`. Tokens need no percent-decoding, so a
/// value that has any is simply not a token.
fn query_values<'a, 'n>(
    uri: &'a Uri,
    name: &'n str,
) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(
        sources: &TokenSources,
        headers: &[(&str, &[u8])],
        uri: &str,
    ) -> Result<Option<String>, Malformed> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let uri = uri.parse().unwrap();
        let found = sources.find(&Method::GET, &map, &uri)?;
        Ok(found.map(|token| String::from_utf8(token.to_vec()).unwrap()))
    }

    fn bearer_only(headers: &[(&str, &[u8])]) -> Result<Option<String>, Malformed> {
        find(&TokenSources::default(), headers, "/")
    }

    fn all_sources() -> TokenSources {
        TokenSources {
            header: Some(HeaderName::from_static("girder-token")),
            cookie: Some("token".into()),
            query: Some("token".into()),
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let value = format!("{scheme} abc");
            assert_eq!(
                bearer_only(&[("authorization", value.as_bytes())]),
                Ok(Some("abc".into()))
            );
        }
    }

    #[test]
    fn other_schemes_and_no_header_mean_no_credential() {
        assert_eq!(bearer_only(&[]), Ok(None));
        assert_eq!(
            bearer_only(&[("authorization", b"Basic YWxpY2U6cHc=")]),
            Ok(None)
        );
    }

    #[test]
    fn empty_bearer_tabs_and_extra_spaces_are_malformed() {
        for value in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer  abc",
            b"Bearer\tabc",
            b"Bearer a b",
            b"Bearer a\tb",
        ] {
            assert_eq!(
                bearer_only(&[("authorization", value)]),
                Err(MALFORMED_BEARER),
                "{value:?}"
            );
        }
    }

    #[test]
    fn every_byte_is_judged_by_the_b64token_rule_in_any_scheme_case() {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
        for b in 0..=255u8 {
            for scheme in ["Bearer", "bEARER"] {
                let mut value = format!("{scheme} ab").into_bytes();
                value.push(b);
                value.extend_from_slice(b"cd==");
                let Ok(header) = HeaderValue::from_bytes(&value) else {
                    continue; // not a header value at all (control bytes)
                };
                let found = find(
                    &TokenSources::default(),
                    &[("authorization", header.as_bytes())],
                    "/",
                );
                match found {
                    Ok(Some(token)) => {
                        assert!(allowed(b), "byte {b:#04x} accepted");
                        assert_eq!(token.as_bytes(), &value[scheme.len() + 1..]);
                    }
                    Err(message) => assert!(!allowed(b), "byte {b:#04x} refused: {message}"),
                    Ok(None) => panic!("byte {b:#04x}: a bearer header read as no credential"),
                }
            }
        }
    }

    /// What the layer's fast path makes of `value`: `find_unchecked`, then, as the
    /// pipeline does for a token the gate refuses, [`malformed_bearer`] for one
    /// that is not a `b64token`.
    fn fast_path(sources: &TokenSources, value: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
        let mut map = HeaderMap::new();
        map.append(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(value).unwrap(),
        );
        let uri = Uri::from_static("/");
        match sources.find_unchecked(&Method::GET, &map, &uri)? {
            Some(token) if !is_b64token(token) => Err(malformed_bearer(token)),
            other => Ok(other.map(<[u8]>::to_vec)),
        }
    }

    #[test]
    fn the_fast_path_finds_and_refuses_every_value_as_find_does() {
        let mut values: Vec<Vec<u8>> = [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer  abc",
            b"Bearer\tabc",
            b"Bearer a b",
            b"Bearer ab==",
            b"Bearer =",
            b"Bearer a=b",
            b"Bearer \xff\xfe",
            b"bearer abc",
            b"Basic YWxpY2U6cHc=",
            b"Bearerabc",
        ]
        .iter()
        .map(|v| v.to_vec())
        .collect();
        for b in 0..=255u8 {
            let mut value = b"bEARER ab".to_vec();
            value.push(b);
            value.extend_from_slice(b"cd==");
            values.push(value);
        }
        for sources in [TokenSources::default(), all_sources()] {
            for value in &values {
                if HeaderValue::from_bytes(value).is_err() {
                    continue;
                }
                let expected = find(&sources, &[("authorization", value)], "/")
                    .map(|t| t.map(String::into_bytes));
                assert_eq!(fast_path(&sources, value), expected, "{value:?}");
            }
        }
    }

    #[test]
    fn padding_belongs_only_at_the_end_of_a_token() {
        assert_eq!(
            bearer_only(&[("authorization", b"Bearer ab==")]),
            Ok(Some("ab==".into()))
        );
        for value in [&b"Bearer ="[..], b"Bearer ==", b"Bearer a=b"] {
            assert_eq!(
                bearer_only(&[("authorization", value)]),
                Err(MALFORMED_BEARER),
                "{value:?}"
            );
        }
    }

    #[test]
    fn non_ascii_values_are_malformed() {
        assert_eq!(
            bearer_only(&[("authorization", b"Bearer \xff\xfe")]),
            Err(NOT_ASCII)
        );
    }

    #[test]
    fn several_authorization_headers_are_malformed_even_if_equal() {
        let headers = [
            ("authorization", &b"Bearer abc"[..]),
            ("authorization", b"Bearer abc"),
        ];
        assert_eq!(bearer_only(&headers), Err(SEVERAL_AUTHORIZATION));
    }

    #[test]
    fn optional_sources_are_ignored_unless_configured() {
        let headers = [("girder-token", &b"abc"[..]), ("cookie", b"token=abc")];
        assert_eq!(
            find(&TokenSources::default(), &headers, "/?token=abc"),
            Ok(None)
        );
    }

    #[test]
    fn configured_sources_are_read() {
        let sources = all_sources();
        assert_eq!(
            find(&sources, &[("girder-token", b"abc")], "/"),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            find(&sources, &[("cookie", b"a=1; token=abc")], "/"),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            find(&sources, &[], "/x?a=1&token=abc"),
            Ok(Some("abc".into()))
        );
    }

    #[test]
    fn the_same_credential_twice_is_fine_two_different_ones_are_not() {
        let sources = all_sources();
        let same = [
            ("authorization", &b"Bearer abc"[..]),
            ("girder-token", b"abc"),
        ];
        assert_eq!(find(&sources, &same, "/?token=abc"), Ok(Some("abc".into())));
        let different = [
            ("authorization", &b"Bearer abc"[..]),
            ("girder-token", b"xyz"),
        ];
        assert_eq!(find(&sources, &different, "/"), Err(SEVERAL_CREDENTIALS));
        assert_eq!(
            find(&sources, &[("cookie", b"token=abc; token=xyz")], "/"),
            Err(SEVERAL_CREDENTIALS)
        );
        assert_eq!(
            find(&sources, &[], "/?token=abc&token=xyz"),
            Err(SEVERAL_CREDENTIALS)
        );
    }
}
