//! Attaching the layer's verdict to a request, in a map with room for the
//! router's extensions.
//!
//! `http` makes a request's extension map on its first insert, with room for
//! three. When this layer is the first to insert (wrapped around the router, or
//! served straight from `axum::serve`), axum's router then adds three of its own
//! (`OriginalUri`, `UrlParams`, `MatchedPath`), and the fourth insert regrows
//! the map: a second table allocated, the entries rehashed into it, the first
//! freed, on every request. Starting the map with room for seven costs the same
//! two allocations as `http`'s own start and saves the regrowth.

use std::sync::LazyLock;

use http::Extensions;

/// Inserts `verdict` into `extensions`; into a map with room for seven if
/// `extensions` holds none yet.
#[inline]
pub(super) fn attach<T: Clone + Send + Sync + 'static>(extensions: &mut Extensions, verdict: T) {
    if extensions.is_empty() {
        make_roomy(extensions);
    }
    extensions.insert(verdict);
}

/// Out of line, so that the request around `extensions` need not move for it.
#[inline(never)]
fn make_roomy(extensions: &mut Extensions) {
    *extensions = ROOMY.clone();
}

/// An empty map whose table has eight buckets (room for seven entries): cloning
/// it copies the table's size, not only its entries.
static ROOMY: LazyLock<Extensions> = LazyLock::new(|| {
    #[derive(Clone, Copy)]
    struct Room<const N: u8>;
    let mut roomy = Extensions::new();
    // A fourth entry grows the table from four buckets to eight; clearing it
    // keeps the eight.
    roomy.insert(Room::<0>);
    roomy.insert(Room::<1>);
    roomy.insert(Room::<2>);
    roomy.insert(Room::<3>);
    roomy.clear();
    roomy
});

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, Debug)]
    struct Earlier(u32);

    #[derive(Clone, PartialEq, Debug)]
    struct Verdict(&'static str);

    #[test]
    fn an_attached_request_keeps_what_it_already_carried() {
        let mut extensions = Extensions::new();
        extensions.insert(Earlier(7));
        attach(&mut extensions, Verdict("live"));
        assert_eq!(extensions.get::<Earlier>(), Some(&Earlier(7)));
        assert_eq!(extensions.get::<Verdict>(), Some(&Verdict("live")));
        assert_eq!(extensions.len(), 2);
    }

    #[test]
    fn a_request_without_extensions_gets_only_the_verdict() {
        let mut extensions = Extensions::new();
        attach(&mut extensions, Verdict("live"));
        assert_eq!(extensions.len(), 1, "the room's placeholders are gone");
        assert_eq!(extensions.get::<Verdict>(), Some(&Verdict("live")));
    }
}
