//! Which byte strings occur in a reference text: a suffix automaton over its
//! bytes, for grounded strings (`x-grounded`). A walk from the root takes a
//! byte in O(log σ) and fails as soon as the string read so far stops being a
//! substring of the text; two strings that occur at the same end positions
//! share a state, so the matcher's mask cache sees one state for both.
//! Built once per grammar in O(n) states and transitions (n ≤
//! [`super::grammar::MAX_REFERENCE`]).
//! Owns the index only; what a grounded string is, and where the reference
//! comes from, is `grammar`'s business. Plain synchronous code.

/// A suffix automaton of one text. State 0 is the root (the empty string).
#[derive(Debug, Clone)]
pub struct SubstringIndex {
    text: Vec<u8>,
    states: Vec<State>,
}

#[derive(Debug, Clone)]
struct State {
    /// Length of the longest string ending in this state.
    len: u32,
    /// Suffix link (`NONE` at the root).
    link: u32,
    /// Outgoing transitions, sorted by byte.
    next: Vec<(u8, u32)>,
}

const NONE: u32 = u32::MAX;

impl State {
    fn get(&self, b: u8) -> Option<u32> {
        self.next
            .binary_search_by_key(&b, |&(c, _)| c)
            .ok()
            .map(|i| self.next[i].1)
    }

    fn set(&mut self, b: u8, to: u32) {
        match self.next.binary_search_by_key(&b, |&(c, _)| c) {
            Ok(i) => self.next[i].1 = to,
            Err(i) => self.next.insert(i, (b, to)),
        }
    }
}

impl Default for SubstringIndex {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl SubstringIndex {
    /// The index of `text` (the classic online construction).
    pub fn new(text: &[u8]) -> Self {
        let mut states = Vec::with_capacity(2 * text.len() + 1);
        states.push(State {
            len: 0,
            link: NONE,
            next: Vec::new(),
        });
        let mut last = 0u32;
        for &b in text {
            let cur = states.len() as u32;
            states.push(State {
                len: states[last as usize].len + 1,
                link: 0,
                next: Vec::new(),
            });
            let mut p = last;
            while p != NONE && states[p as usize].get(b).is_none() {
                states[p as usize].set(b, cur);
                p = states[p as usize].link;
            }
            if p != NONE {
                let q = states[p as usize].get(b).expect("checked above");
                if states[p as usize].len + 1 == states[q as usize].len {
                    states[cur as usize].link = q;
                } else {
                    let clone = states.len() as u32;
                    let mut c = states[q as usize].clone();
                    c.len = states[p as usize].len + 1;
                    states.push(c);
                    while p != NONE && states[p as usize].get(b) == Some(q) {
                        states[p as usize].set(b, clone);
                        p = states[p as usize].link;
                    }
                    states[q as usize].link = clone;
                    states[cur as usize].link = clone;
                }
            }
            last = cur;
        }
        SubstringIndex {
            text: text.to_vec(),
            states,
        }
    }

    /// The text indexed.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// From `state` (the string read so far), the state after one more byte
    /// `b`, if that longer string still occurs in the text.
    pub fn step(&self, state: u32, b: u8) -> Option<u32> {
        self.states.get(state as usize)?.get(b)
    }

    /// The state after reading `s` from the root, if `s` occurs in the text.
    pub fn walk(&self, s: &[u8]) -> Option<u32> {
        s.iter().try_fold(0u32, |st, &b| self.step(st, b))
    }

    /// Number of states (at most 2n for a text of n ≥ 2 bytes).
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.len() == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn occurs(text: &[u8], s: &[u8]) -> bool {
        s.is_empty() || text.windows(s.len()).any(|w| w == s)
    }

    #[test]
    fn substrings_and_not() {
        let t = "友達に明日って伝えて abcabc".as_bytes();
        let ix = SubstringIndex::new(t);
        for s in ["", "明日", "bca", "abcabc", "伝えて a", "c"] {
            assert!(ix.walk(s.as_bytes()).is_some(), "{s:?}");
        }
        for s in ["abcabca", "cc", "明後日", "x"] {
            assert!(ix.walk(s.as_bytes()).is_none(), "{s:?}");
        }
        // a refused byte inside a UTF-8 character: the walk stops there
        let yo = "明".as_bytes();
        assert!(ix.walk(&yo[..2]).is_some());
        assert!(ix.step(ix.walk(&yo[..2]).unwrap(), 0xFF).is_none());
    }

    #[test]
    fn empty_text_allows_only_the_empty_string() {
        let ix = SubstringIndex::new(b"");
        assert!(ix.is_empty());
        assert_eq!(ix.walk(b""), Some(0));
        assert_eq!(ix.walk(b"a"), None);
    }

    #[test]
    fn linear_size() {
        let t: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 13) as u8 + b'a').collect();
        let ix = SubstringIndex::new(&t);
        assert!(ix.len() <= 2 * t.len(), "{} states", ix.len());
        assert!(ix.walk(&t).is_some());
    }

    #[test]
    fn same_end_positions_share_a_state() {
        // in "xbc", "bc" and "c" both end only at the last byte; "b" does not
        let ix = SubstringIndex::new(b"xbc");
        assert_eq!(ix.walk(b"bc"), ix.walk(b"c"));
        assert_ne!(ix.walk(b"b"), ix.walk(b"c"));
    }

    proptest! {
        /// Every string over a small alphabet is accepted exactly when it
        /// occurs in the text.
        #[test]
        fn agrees_with_a_scan(text in proptest::collection::vec(0u8..4, 0..60),
                              probes in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..8), 1..40)) {
            let ix = SubstringIndex::new(&text);
            for p in &probes {
                prop_assert_eq!(ix.walk(p).is_some(), occurs(&text, p), "{:?} in {:?}", p, text);
            }
            // every substring of the text walks
            for i in 0..text.len() {
                for j in i..text.len().min(i + 10) {
                    prop_assert!(ix.walk(&text[i..=j]).is_some());
                }
            }
        }
    }
}
