//! Clean prompt texts already scanned, per core: a request repeats most of the text of the one
//! before it (the system prompt, tool definitions, the whole conversation so far), and a text
//! that one profile found clean is clean again under the same profile. Remembering it turns a
//! scan of ~1 ns per byte into a hash and a comparison of ~0.03 ns per byte.
//!
//! Exact: an entry holds the whole text and a hit compares every byte, so two texts with the
//! same hash can never share a verdict. Bounded: [`MEMO_SLOTS`] slots and [`MEMO_BYTES`] of
//! text; a new entry takes its slot's place and, while the text held is over budget, entries
//! are dropped in slot order (a clock hand). A flood of distinct texts only makes the memo
//! miss; every lookup is one slot, so crafted collisions cost nothing more than a miss.

use std::hash::BuildHasher;

/// Slots in the table (a power of two).
const MEMO_SLOTS: usize = 4096;
/// Text held at most, summed over entries.
const MEMO_BYTES: usize = 4 * 1024 * 1024;
/// Shorter texts are not remembered: the entry would cost more than the scan.
pub(crate) const MEMO_MIN_BYTES: usize = 32;
/// Longer texts are not remembered: one would crowd out hundreds of others.
const MEMO_MAX_BYTES: usize = 256 * 1024;

/// One remembered clean text.
struct Entry {
    profile: u64,
    hash: u64,
    text: Box<[u8]>,
}

/// Clean texts by (profile id, text). See the module docs.
#[derive(Default)]
pub(crate) struct CleanMemo {
    hasher: foldhash::fast::RandomState,
    slots: Vec<Option<Entry>>,
    bytes: usize,
    hand: usize,
}

impl std::fmt::Debug for CleanMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanMemo")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl CleanMemo {
    /// Whether `text` is worth remembering at all.
    pub(crate) fn fits(text: &str) -> bool {
        (MEMO_MIN_BYTES..=MEMO_MAX_BYTES).contains(&text.len())
    }

    fn key(&self, profile: u64, text: &[u8]) -> (u64, usize) {
        let hash = self.hasher.hash_one((profile, text));
        (hash, hash as usize & (MEMO_SLOTS - 1))
    }

    /// True when `profile` found exactly `text` clean before.
    pub(crate) fn contains(&self, profile: u64, text: &str) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (hash, slot) = self.key(profile, text.as_bytes());
        self.slots[slot]
            .as_ref()
            .is_some_and(|e| e.hash == hash && e.profile == profile && *e.text == *text.as_bytes())
    }

    /// Remembers that `profile` found `text` clean.
    pub(crate) fn insert(&mut self, profile: u64, text: &str) {
        if !Self::fits(text) {
            return;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(MEMO_SLOTS, || None);
        }
        let (hash, slot) = self.key(profile, text.as_bytes());
        self.evict(slot);
        while self.bytes + text.len() > MEMO_BYTES {
            let at = self.hand;
            self.hand = (self.hand + 1) & (MEMO_SLOTS - 1);
            self.evict(at);
        }
        self.bytes += text.len();
        self.slots[slot] = Some(Entry {
            profile,
            hash,
            text: text.as_bytes().into(),
        });
    }

    fn evict(&mut self, slot: usize) {
        if let Some(e) = self.slots[slot].take() {
            self.bytes -= e.text.len();
        }
    }

    /// Forgets the texts of profiles `keep` rejects (after a reload).
    pub(crate) fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].as_ref().is_some_and(|e| !keep(e.profile)) {
                self.evict(slot);
            }
        }
    }

    /// Text held, in bytes.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize, len: usize) -> String {
        let mut s = format!("text number {n} ");
        while s.len() < len {
            s.push('x');
        }
        s
    }

    #[test]
    fn remembers_exact_texts_per_profile() {
        let mut memo = CleanMemo::default();
        let a = text(1, 100);
        assert!(!memo.contains(1, &a));
        memo.insert(1, &a);
        assert!(memo.contains(1, &a));
        assert!(!memo.contains(2, &a), "another profile's verdict");
        let mut b = a.clone();
        b.pop();
        b.push('y');
        assert!(!memo.contains(1, &b), "one byte differs");
        memo.retain(|p| p != 1);
        assert!(!memo.contains(1, &a));
        assert_eq!(memo.bytes(), 0);
    }

    #[test]
    fn short_and_huge_texts_are_not_remembered() {
        let mut memo = CleanMemo::default();
        let short = "x".repeat(MEMO_MIN_BYTES - 1);
        let huge = "x".repeat(MEMO_MAX_BYTES + 1);
        memo.insert(1, &short);
        memo.insert(1, &huge);
        assert!(!memo.contains(1, &short));
        assert!(!memo.contains(1, &huge));
        assert_eq!(memo.bytes(), 0);
    }

    #[test]
    fn stays_within_its_byte_budget() {
        let mut memo = CleanMemo::default();
        let len = 64 * 1024;
        let mut held = Vec::new();
        for n in 0..(3 * MEMO_BYTES / len) {
            let t = text(n, len);
            memo.insert(7, &t);
            assert!(memo.bytes() <= MEMO_BYTES, "after {n} inserts");
            assert!(memo.contains(7, &t), "the newest text is held");
            held.push(t);
        }
        let kept = held.iter().filter(|t| memo.contains(7, t)).count();
        assert!(kept >= MEMO_BYTES / len / 2, "{kept} texts kept");
        assert!(kept <= MEMO_BYTES / len);
    }
}
