//! [`RegisteredSets`]: which guards' scope sets a state's registry was found to
//! declare, so a guard looks its scopes up on its first request only.

use std::{
    any::TypeId,
    hash::{Hash, Hasher},
    sync::atomic::{
        AtomicU64,
        Ordering::{Acquire, Relaxed, Release},
    },
};

/// Slots of the table: more than the scope sets an app guards routes with.
/// Past that, sets are still checked, on every request.
const SLOTS: usize = 32;

/// Fingerprints of scope-set types (64 bits of their `TypeId`, itself a hash),
/// in a fixed table that lookups only load from: no lock, no count to write.
/// Two set types alike in those 64 bits would vouch for each other; at 2^-64 a
/// pair, that risks only this check, which guards against typos in markers.
#[derive(Debug)]
pub(crate) struct RegisteredSets {
    /// 0 is empty; fingerprints are never 0.
    slots: [AtomicU64; SLOTS],
}

impl Default for RegisteredSets {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Clone for RegisteredSets {
    /// A table holding what this one holds (the atomics themselves are not `Clone`).
    fn clone(&self) -> Self {
        let copy = Self::default();
        for (to, from) in copy.slots.iter().zip(&self.slots) {
            to.store(from.load(Acquire), Relaxed);
        }
        copy
    }
}

impl RegisteredSets {
    /// Whether `set` was found registered.
    pub(crate) fn contains(&self, set: TypeId) -> bool {
        let print = fingerprint(set);
        for slot in self.probe(print) {
            match slot.load(Acquire) {
                0 => return false,
                found if found == print => return true,
                _ => {}
            }
        }
        false
    }

    /// Remembers that `set` was found registered (unless the table is full).
    pub(crate) fn insert(&self, set: TypeId) {
        let print = fingerprint(set);
        for slot in self.probe(print) {
            match slot.compare_exchange(0, print, Release, Acquire) {
                Ok(_) => return,
                Err(found) if found == print => return,
                Err(_) => {}
            }
        }
    }

    /// The slots to try for `print`, from its own.
    fn probe(&self, print: u64) -> impl Iterator<Item = &AtomicU64> {
        let start = print as usize % SLOTS;
        (0..SLOTS).map(move |i| &self.slots[(start + i) % SLOTS])
    }
}

/// 64 bits of `set`'s `TypeId`; never 0.
fn fingerprint(set: TypeId) -> u64 {
    let mut words = Words(0);
    set.hash(&mut words);
    words.0 | 1
}

/// Keeps what a `TypeId` hashes into it (a hash already, so no mixing beyond a
/// fold of whatever words it is given).
struct Words(u64);

impl Hasher for Words {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = self.0.rotate_left(29) ^ word;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_found_once_inserted_and_others_are_not() {
        let sets = RegisteredSets::default();
        assert!(!sets.contains(TypeId::of::<u8>()));
        sets.insert(TypeId::of::<u8>());
        sets.insert(TypeId::of::<u8>());
        assert!(sets.contains(TypeId::of::<u8>()));
        assert!(!sets.contains(TypeId::of::<u16>()));
        assert!(sets.clone().contains(TypeId::of::<u8>()));
    }

    #[test]
    fn a_full_table_still_answers_no_for_the_sets_it_could_not_keep() {
        struct Set<const N: usize>;
        macro_rules! ids {
            ($($n:literal)*) => { [$(TypeId::of::<Set<$n>>()),*] };
        }
        let ids = ids!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24
            25 26 27 28 29 30 31 32 33 34 35 36 37 38 39);
        let sets = RegisteredSets::default();
        for id in &ids[..SLOTS] {
            sets.insert(*id);
        }
        for id in &ids[SLOTS..] {
            sets.insert(*id);
            assert!(!sets.contains(*id), "no room: not remembered");
        }
        assert!(ids[..SLOTS].iter().all(|id| sets.contains(*id)));
    }
}
