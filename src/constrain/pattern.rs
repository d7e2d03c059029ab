//! A schema `pattern` as a small NFA (at most 64 states, a set is one u64)
//! that a string's characters are fed through one at a time, so a prefix
//! that can no longer match is refused at once. Unanchored like JSON schema:
//! `^`/`$` are assertions at the start and end. Built from `schema::Pattern`'s
//! parse tree; a pattern too large for 64 states is not compiled (the string
//! is then only checked by `schema::validate` after decoding).

use crate::schema::pattern::{ClassItem, Node, Pattern};

/// Most NFA states a pattern may need.
pub const MAX_STATES: usize = 64;

#[derive(Debug, Clone)]
enum Pred {
    Char(char),
    Any,
    Class(Vec<ClassItem>, bool),
}

impl Pred {
    fn matches(&self, c: char) -> bool {
        match self {
            Pred::Char(x) => *x == c,
            Pred::Any => c != '\n' && c != '\r',
            Pred::Class(items, neg) => items.iter().any(|i| i.matches(c)) != *neg,
        }
    }
}

#[derive(Debug, Clone)]
enum St {
    /// Consume a char matching the predicate, go to `next`.
    Consume(Pred, usize),
    Split(usize, usize),
    /// Epsilon to `next` only at position 0.
    AtStart(usize),
    /// Epsilon to `next` only at the end of the string.
    AtEnd(usize),
    Match,
    /// Epsilon to `next` (placeholder while building).
    Eps(usize),
}

#[derive(Debug, Clone)]
pub struct Nfa {
    states: Vec<St>,
    start: usize,
}

/// Set of NFA states, plus "a match was already found" (unanchored end).
pub type Set = u64;
const MATCHED: Set = 1 << 63;

struct Builder {
    states: Vec<St>,
}

impl Builder {
    fn push(&mut self, s: St) -> Option<usize> {
        if self.states.len() >= MAX_STATES - 1 {
            return None;
        }
        self.states.push(s);
        Some(self.states.len() - 1)
    }

    /// Compiles `node` so that it continues to `next`; returns its entry state.
    fn build(&mut self, node: &Node, next: usize) -> Option<usize> {
        Some(match node {
            Node::Char(c) => self.push(St::Consume(Pred::Char(*c), next))?,
            Node::Any => self.push(St::Consume(Pred::Any, next))?,
            Node::Class(items, neg) => {
                self.push(St::Consume(Pred::Class(items.clone(), *neg), next))?
            }
            Node::Start => self.push(St::AtStart(next))?,
            Node::End => self.push(St::AtEnd(next))?,
            Node::Concat(items) => {
                let mut at = next;
                for it in items.iter().rev() {
                    at = self.build(it, at)?;
                }
                at
            }
            Node::Alt(options) => {
                let entries: Option<Vec<usize>> =
                    options.iter().map(|o| self.build(o, next)).collect();
                let entries = entries?;
                let mut at = *entries.last()?;
                for &e in entries.iter().rev().skip(1) {
                    at = self.push(St::Split(e, at))?;
                }
                at
            }
            Node::Repeat(inner, min, max) => {
                let mut at = next;
                match max {
                    None => {
                        // loop: split(inner → loop, next)
                        let lp = self.push(St::Eps(0))?;
                        let body = self.build(inner, lp)?;
                        self.states[lp] = St::Split(body, next);
                        at = lp;
                    }
                    Some(mx) => {
                        // x{min,max}: min copies, then (max - min) optional ones
                        // each of which may skip straight to `next`.
                        for _ in *min..*mx {
                            let body = self.build(inner, at)?;
                            at = self.push(St::Split(body, next))?;
                        }
                    }
                }
                for _ in 0..*min {
                    at = self.build(inner, at)?;
                }
                at
            }
        })
    }
}

impl Nfa {
    /// `None` when the pattern needs more than [`MAX_STATES`] states.
    pub fn compile(p: &Pattern) -> Option<Nfa> {
        let mut b = Builder { states: Vec::new() };
        let accept = b.push(St::Match)?;
        let start = b.build(p.root(), accept)?;
        Some(Nfa {
            states: b.states,
            start,
        })
    }

    fn close(&self, set: &mut Set, s: usize, at_start: bool, at_end: bool) {
        let bit = 1u64 << s;
        if *set & bit != 0 {
            return;
        }
        *set |= bit;
        match self.states[s] {
            St::Split(a, b) => {
                self.close(set, a, at_start, at_end);
                self.close(set, b, at_start, at_end);
            }
            St::Eps(n) => self.close(set, n, at_start, at_end),
            St::AtStart(n) if at_start => self.close(set, n, at_start, at_end),
            St::AtEnd(n) if at_end => self.close(set, n, at_start, at_end),
            St::Match => *set |= MATCHED,
            _ => {}
        }
    }

    /// The state set before the first character.
    pub fn initial(&self) -> Set {
        let mut s = 0;
        self.close(&mut s, self.start, true, false);
        s
    }

    /// Feeds one character; 0 means no match is possible any more.
    pub fn step(&self, set: Set, c: char) -> Set {
        if set & MATCHED != 0 {
            return MATCHED; // unanchored: a match already happened, the rest is free
        }
        let mut out = 0;
        for (i, st) in self.states.iter().enumerate() {
            if set & (1 << i) == 0 {
                continue;
            }
            if let St::Consume(p, n) = st {
                if p.matches(c) {
                    self.close(&mut out, *n, false, false);
                }
            }
        }
        // unanchored start: a match may begin at any later position
        self.close(&mut out, self.start, false, false);
        if out & MATCHED != 0 {
            return MATCHED;
        }
        out
    }

    /// Whether the string fed so far matches (end assertions allowed now).
    pub fn accepts(&self, set: Set) -> bool {
        if set & MATCHED != 0 {
            return true;
        }
        let mut out = 0;
        for i in 0..self.states.len() {
            if set & (1 << i) != 0 {
                self.close(&mut out, i, false, true);
            }
        }
        out & MATCHED != 0
    }

    /// Whether some character in `lo..=hi` can be taken next (used while a
    /// multi-byte UTF-8 character is still partial: its code point lies in that range).
    pub fn may_take_in(&self, set: Set, lo: u32, hi: u32) -> bool {
        if set & MATCHED != 0 {
            return true;
        }
        let hits = |a: u32, b: u32| a <= hi && b >= lo;
        (0..self.states.len()).any(|i| {
            if set & (1 << i) == 0 {
                return false;
            }
            match &self.states[i] {
                St::Consume(Pred::Char(c), _) => hits(*c as u32, *c as u32),
                St::Consume(Pred::Any, _) => true,
                St::Consume(Pred::Class(items, neg), _) => {
                    *neg || items.iter().any(|it| match it {
                        ClassItem::Range(a, b) => hits(*a as u32, *b as u32),
                        ClassItem::Digit(n) | ClassItem::Word(n) => *n,
                        ClassItem::Space(n) => *n || lo >= 0x80,
                    })
                }
                _ => false,
            }
        })
    }

    /// Whether the set can still lead to a match. Every string can be
    /// extended by the unanchored restart, so this only prunes sets with no
    /// live state that is not an `AtStart` guard.
    pub fn alive(&self, set: Set) -> bool {
        set & MATCHED != 0
            || (0..self.states.len()).any(|i| {
                set & (1 << i) != 0 && matches!(self.states[i], St::Consume(..) | St::AtEnd(_))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &str, s: &str) -> bool {
        let nfa = Nfa::compile(&Pattern::new(p).unwrap()).unwrap();
        let mut set = nfa.initial();
        for c in s.chars() {
            set = nfa.step(set, c);
        }
        nfa.accepts(set)
    }

    #[test]
    fn agrees_with_the_backtracking_matcher() {
        let pats = [
            "^([01][0-9]|2[0-3]):[0-5][0-9]$",
            "^[a-z]{2,4}$",
            "ab+c",
            "^x?y*$",
            "^\\d{3}-\\d{4}$",
            "^(a|bc){1,3}$",
            "^[^0-9]+$",
            "^.{0,5}$",
            "z$",
            "^a(b(c|d)?)*e$",
        ];
        let strs = [
            "", "00:00", "23:59", "24:00", "9:30", "12:5", "ab", "abcd", "abcde", "abbbc", "xac",
            "xyyy", "y", "xx", "123-4567", "12-4567", "a", "bcbca", "abca", "bcbcbc", "abc",
            "日本", "hello", "123456", "az", "abcbde", "ae", "abdbce",
        ];
        for p in pats {
            let pat = Pattern::new(p).unwrap();
            for s in strs {
                assert_eq!(run(p, s), pat.is_match(s), "{p} on {s:?}");
            }
        }
    }

    #[test]
    fn dead_prefixes_are_refused() {
        let nfa = Nfa::compile(&Pattern::new("^([01][0-9]|2[0-3]):[0-5][0-9]$").unwrap()).unwrap();
        let s = nfa.step(nfa.initial(), '2');
        assert!(nfa.alive(s));
        assert!(!nfa.alive(nfa.step(s, '7')));
        assert!(!nfa.alive(nfa.step(nfa.initial(), '3')));
    }
}
