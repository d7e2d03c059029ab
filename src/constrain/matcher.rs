//! The byte-level matcher: a pushdown automaton over a compiled [`Grammar`]
//! whose whole state is a small fixed-size stack of [`Frame`]s, cheap to copy
//! (the mask walk copies it once per trie edge) and hashable (masks are
//! cached per state). [`Matcher::feed`] advances by one byte or refuses it;
//! a refused byte leaves the matcher unusable, so callers feed a copy.
//! Numbers are checked on the digits so far (a prefix survives only if some
//! completion lies within minimum/maximum); multipleOf is checked when the
//! number closes (bounded ranges with multipleOf are literal tries instead).
//! A grounded string's state is its value's state in the reference text's
//! substring index (`substr`): each byte must keep the value a substring.

use std::hash::{Hash, Hasher};

use super::grammar::{first_class, Grammar, Node, NodeId, Top, MAX_FRAC_DIGITS, MAX_INT_DIGITS};

/// Deepest stack the matcher keeps (about three frames per nesting level).
pub const MAX_STACK: usize = 28;
/// `Str::node` of a free-form object key.
const FREE_KEY: NodeId = NodeId::MAX;
const FREE_KEY_MAX: u32 = 64;

/// Fixed spellings between JSON parts (json.dumps style).
const FIXED: [&[u8]; 3] = [b"{\"name\": \"", b", \"arguments\": ", b": "];
const F_CALL_PREFIX: u8 = 0;
const F_ARGS: u8 = 1;
const F_COLON: u8 = 2;

/// Text that must not be spelled out in plain text (it would parse as markup).
pub const MARKERS: [&[u8]; 6] = [
    b"<tool_call>",
    b"</tool_call>",
    b"<|fallback|>",
    b"<|im_end|>",
    b"<|im_start|>",
    b"<|endoftext|>",
];
const HELD: usize = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Frame {
    #[default]
    Empty,
    /// A value of `node` that has not started.
    Value(NodeId),
    Fixed {
        which: u8,
        pos: u8,
    },
    Lit {
        trie: u32,
        node: u32,
    },
    /// Inside a string (after the opening quote).
    Str {
        node: NodeId,
        len: u16,
        /// 0 none, 1 after `\`, 2..=5 reading `\uXXXX` digits.
        esc: u8,
        /// UTF-8 continuation bytes still expected.
        need: u8,
        cp: u32,
        pat: u64,
    },
    Num {
        node: NodeId,
        /// 0 start, 1 after '-', 2 integer digits, 3 after '.', 4 fraction digits.
        phase: u8,
        neg: bool,
        idig: u8,
        fdig: u8,
        mant: u64,
    },
    Obj {
        node: NodeId,
        used: u64,
        /// 0 expect '{', 1 after '{', 2 in a declared key, 4 after a value,
        /// 5 after ',', 6 after ", " (a key must follow).
        phase: u8,
        key: u32,
    },
    Arr {
        node: NodeId,
        count: u8,
        /// 0 expect '[', 1 after '[', 2 after an item, 3 after ','.
        phase: u8,
    },
    /// A tool call: 1 in the name, 2 after the arguments (expect '}').
    Call {
        phase: u8,
        name: u32,
    },
    /// Plain text: the tail that could still grow into a marker.
    Text {
        held: [u8; HELD],
        n: u8,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Matcher {
    stack: [Frame; MAX_STACK],
    len: u8,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.frames() == o.frames()
    }
}
impl Eq for Matcher {}
impl Hash for Matcher {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.frames().hash(h)
    }
}

fn pow10(n: i32) -> f64 {
    10f64.powi(n)
}

impl Matcher {
    fn with(frames: &[Frame]) -> Matcher {
        let mut m = Matcher {
            stack: [Frame::Empty; MAX_STACK],
            len: 0,
        };
        for f in frames {
            m.push(*f);
        }
        m
    }

    /// The body of a tool call (`{"name": ...}`), or a bare JSON value.
    pub fn start(g: &Grammar) -> Matcher {
        match &g.top {
            Top::Tools { .. } => Matcher::with(&[
                Frame::Call { phase: 1, name: 0 },
                Frame::Fixed {
                    which: F_CALL_PREFIX,
                    pos: 0,
                },
            ]),
            Top::Json { root } => Matcher::with(&[Frame::Value(*root)]),
        }
    }

    /// Plain text that never spells a marker.
    pub fn text() -> Matcher {
        Matcher::with(&[Frame::Text {
            held: [0; HELD],
            n: 0,
        }])
    }

    pub fn frames(&self) -> &[Frame] {
        &self.stack[..self.len as usize]
    }

    fn push(&mut self, f: Frame) -> bool {
        if (self.len as usize) < MAX_STACK {
            self.stack[self.len as usize] = f;
            self.len += 1;
            true
        } else {
            false
        }
    }

    /// The grammar's value is complete (nothing more may follow).
    pub fn is_done(&self) -> bool {
        self.len == 0
    }

    /// The value may end here (done, or only a number/literal that could also go on).
    pub fn can_end(&self, g: &Grammar) -> bool {
        self.frames().iter().all(|f| match *f {
            Frame::Num { .. } => num_can_close(g, f),
            Frame::Lit { trie, node } => {
                g.tries[trie as usize].nodes[node as usize].value.is_some()
            }
            Frame::Text { .. } => true,
            _ => false,
        })
    }

    /// A key for mask caching: states that accept the same token set map to one key.
    pub fn cache_key(&self, g: &Grammar, longest_token: usize) -> Matcher {
        let mut k = *self;
        for f in &mut k.stack[..k.len as usize] {
            if let Frame::Str {
                node,
                len,
                esc: 0,
                need: 0,
                pat,
                ..
            } = f
            {
                let (min, max, pattern, grounded) = str_bounds(g, *node);
                if pattern.is_none()
                    && !grounded
                    && u32::from(*len) >= min
                    && max.saturating_sub(u32::from(*len)) as usize > longest_token
                {
                    *len = u16::MAX;
                    *pat = 0;
                }
            }
        }
        k
    }

    /// Advances by one byte; false when the grammar does not allow it here.
    pub fn feed(&mut self, g: &Grammar, b: u8) -> bool {
        loop {
            if self.len == 0 {
                return false;
            }
            let top = self.len as usize - 1;
            let frame = self.stack[top];
            match self.step(g, top, frame, b) {
                Outcome::Took => return true,
                Outcome::Refused => return false,
                Outcome::Again => continue,
            }
        }
    }

    fn pop(&mut self) {
        self.len -= 1;
        self.stack[self.len as usize] = Frame::Empty;
    }

    fn step(&mut self, g: &Grammar, top: usize, frame: Frame, b: u8) -> Outcome {
        use Outcome::*;
        match frame {
            Frame::Empty => Refused,
            Frame::Fixed { which, pos } => {
                let lit = FIXED[which as usize];
                if lit[pos as usize] != b {
                    return Refused;
                }
                if pos as usize + 1 == lit.len() {
                    self.pop();
                } else {
                    self.stack[top] = Frame::Fixed {
                        which,
                        pos: pos + 1,
                    };
                }
                Took
            }
            Frame::Value(id) => {
                self.stack[top] = match &g.nodes[id as usize] {
                    Node::Literal { trie } => Frame::Lit {
                        trie: *trie,
                        node: 0,
                    },
                    Node::String { pattern, .. } => {
                        if b != b'"' {
                            return Refused;
                        }
                        self.stack[top] = Frame::Str {
                            node: id,
                            len: 0,
                            esc: 0,
                            need: 0,
                            cp: 0,
                            pat: pattern.map_or(0, |p| g.patterns[p as usize].initial()),
                        };
                        return Took;
                    }
                    Node::Number { .. } => Frame::Num {
                        node: id,
                        phase: 0,
                        neg: false,
                        idig: 0,
                        fdig: 0,
                        mant: 0,
                    },
                    Node::Object { .. } => Frame::Obj {
                        node: id,
                        used: 0,
                        phase: 0,
                        key: 0,
                    },
                    Node::Array { .. } => Frame::Arr {
                        node: id,
                        count: 0,
                        phase: 0,
                    },
                    Node::Union { alts } => match first_class(b).and_then(|c| alts[c]) {
                        Some(alt) => Frame::Value(alt),
                        None => return Refused,
                    },
                };
                Again
            }
            Frame::Lit { trie, node } => {
                let t = &g.tries[trie as usize];
                if let Some(n) = t.child(node, b) {
                    self.stack[top] = Frame::Lit { trie, node: n };
                    Took
                } else if t.nodes[node as usize].value.is_some() {
                    self.pop();
                    Again
                } else {
                    Refused
                }
            }
            Frame::Str { .. } => self.string(g, top, frame, b),
            Frame::Num { .. } => self.number(g, top, frame, b),
            Frame::Obj { .. } => self.object(g, top, frame, b),
            Frame::Arr { node, count, phase } => {
                let Node::Array { item, min, max } = g.nodes[node as usize] else {
                    return Refused;
                };
                match (phase, b) {
                    (0, b'[') => {
                        self.stack[top] = Frame::Arr {
                            node,
                            count,
                            phase: 1,
                        };
                        Took
                    }
                    (1 | 2, b']') if u32::from(count) >= min => {
                        self.pop();
                        Took
                    }
                    (1, _) if max > 0 => {
                        self.stack[top] = Frame::Arr {
                            node,
                            count: 1,
                            phase: 2,
                        };
                        if !self.push(Frame::Value(item)) {
                            return Refused;
                        }
                        Again
                    }
                    (2, b',') if u32::from(count) < max => {
                        self.stack[top] = Frame::Arr {
                            node,
                            count,
                            phase: 3,
                        };
                        Took
                    }
                    (3, b' ') => {
                        self.stack[top] = Frame::Arr {
                            node,
                            count: count + 1,
                            phase: 2,
                        };
                        if !self.push(Frame::Value(item)) {
                            return Refused;
                        }
                        Took
                    }
                    _ => Refused,
                }
            }
            Frame::Call { phase, name } => {
                let Top::Tools { names, args, .. } = &g.top else {
                    return Refused;
                };
                match phase {
                    1 => {
                        let t = &g.tries[*names as usize];
                        let Some(n) = t.child(name, b) else {
                            return Refused;
                        };
                        match t.nodes[n as usize].value {
                            Some(tool) if t.nodes[n as usize].children.is_empty() => {
                                self.stack[top] = Frame::Call { phase: 2, name: n };
                                let ok = self.push(Frame::Value(args[tool as usize]))
                                    && self.push(Frame::Fixed {
                                        which: F_ARGS,
                                        pos: 0,
                                    });
                                if ok {
                                    Took
                                } else {
                                    Refused
                                }
                            }
                            _ => {
                                self.stack[top] = Frame::Call { phase: 1, name: n };
                                Took
                            }
                        }
                    }
                    2 if b == b'}' => {
                        self.pop();
                        Took
                    }
                    _ => Refused,
                }
            }
            Frame::Text { mut held, n } => {
                let mut buf = [0u8; HELD + 1];
                buf[..n as usize].copy_from_slice(&held[..n as usize]);
                buf[n as usize] = b;
                let all = &buf[..n as usize + 1];
                // keep the longest suffix that is a prefix of a marker
                if MARKERS.iter().any(|m| all.ends_with(m)) {
                    return Refused;
                }
                let keep = (0..all.len())
                    .map(|start| &all[start..])
                    .find(|tail| MARKERS.iter().any(|m| m.starts_with(tail)))
                    .map_or(0, <[u8]>::len);
                let from = all.len() - keep;
                held[..keep].copy_from_slice(&all[from..]);
                self.stack[top] = Frame::Text {
                    held,
                    n: keep as u8,
                };
                Took
            }
        }
    }

    fn string(&mut self, g: &Grammar, top: usize, frame: Frame, b: u8) -> Outcome {
        let Frame::Str {
            node,
            mut len,
            mut esc,
            mut need,
            mut cp,
            mut pat,
        } = frame
        else {
            return Outcome::Refused;
        };
        let (min, max, pattern, grounded) = str_bounds(g, node);
        let nfa = pattern.map(|p| &g.patterns[p as usize]);
        let mut ch: Option<u32> = None;
        // A grounded string takes its raw bytes one by one from the
        // reference; an escape when it is complete (one ASCII byte).
        let ground = |state: u64, b: u8| ground_step(g, state, b);
        if grounded && esc == 0 && b != b'"' && b != b'\\' {
            match ground(pat, b) {
                Some(s) => pat = s,
                None => return Outcome::Refused,
            }
        }
        if need > 0 {
            if b & 0xC0 != 0x80 {
                return Outcome::Refused;
            }
            // no overlong forms, surrogates or code points past U+10FFFF
            let bad_second = match (cp, need) {
                (0x0, 2) => b < 0xA0,
                (0xD, 2) => b >= 0xA0,
                (0x0, 3) => b < 0x90,
                (0x4, 3) => b >= 0x90,
                _ => false,
            };
            if bad_second {
                return Outcome::Refused;
            }
            cp = (cp << 6) | u32::from(b & 0x3F);
            need -= 1;
            if need == 0 {
                ch = Some(cp);
            }
        } else if esc == 1 {
            let c = match b {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                // \uXXXX only where no pattern must be tracked through it
                // (and not in grounded strings: json.dumps spells only
                // control characters that way)
                b'u' if nfa.is_none() && !grounded => {
                    esc = 2;
                    cp = 0;
                    '\0'
                }
                _ => return Outcome::Refused,
            };
            if esc == 1 {
                esc = 0;
                ch = Some(c as u32);
                if grounded {
                    match ground(pat, c as u8) {
                        Some(s) => pat = s,
                        None => return Outcome::Refused,
                    }
                }
            }
        } else if esc >= 2 {
            let d = match (b as char).to_digit(16) {
                Some(d) => d,
                None => return Outcome::Refused,
            };
            cp = cp * 16 + d;
            if esc == 3 && (0xD8..0xE0).contains(&cp) {
                return Outcome::Refused; // a surrogate, whatever follows
            }
            if esc == 5 {
                esc = 0;
                if (0xD800..0xE000).contains(&cp) {
                    return Outcome::Refused;
                }
                ch = Some(cp);
            } else {
                esc += 1;
            }
        } else {
            match b {
                b'"' => {
                    if u32::from(len) < min || nfa.is_some_and(|n| !n.accepts(pat)) {
                        return Outcome::Refused;
                    }
                    self.pop();
                    return Outcome::Took;
                }
                b'\\' => {
                    // only if some escaped character can follow
                    if grounded
                        && !b"\"\\/\x08\x0c\n\r\t"
                            .iter()
                            .any(|&c| ground(pat, c).is_some())
                    {
                        return Outcome::Refused;
                    }
                    if let Some(n) = nfa {
                        let ok = ['"', '\\', '/', '\u{8}', '\u{c}', '\n', '\r', '\t']
                            .iter()
                            .any(|&c| n.may_take_in(pat, c as u32, c as u32));
                        if !ok {
                            return Outcome::Refused;
                        }
                    }
                    esc = 1
                }
                0..=0x1F | 0x7F => return Outcome::Refused,
                0x20..=0x7E => ch = Some(u32::from(b)),
                0xC2..=0xDF => {
                    need = 1;
                    cp = u32::from(b & 0x1F);
                }
                0xE0..=0xEF => {
                    need = 2;
                    cp = u32::from(b & 0x0F);
                }
                0xF0..=0xF4 => {
                    need = 3;
                    cp = u32::from(b & 0x07);
                }
                _ => return Outcome::Refused,
            }
            if u32::from(len) >= max {
                return Outcome::Refused; // no room for another character
            }
        }
        if need > 0 {
            // a partial character: some code point it can still become must fit the pattern
            if let Some(n) = nfa {
                let shift = 6 * u32::from(need);
                let (lo, hi) = ((cp << shift).max(0x80), (cp << shift) | ((1 << shift) - 1));
                if !n.may_take_in(pat, lo, hi) {
                    return Outcome::Refused;
                }
            }
        }
        if let Some(c) = ch {
            let Some(c) = char::from_u32(c) else {
                return Outcome::Refused;
            };
            if u32::from(len) >= max {
                return Outcome::Refused;
            }
            len += 1;
            if let Some(n) = nfa {
                pat = n.step(pat, c);
                if !n.alive(pat) {
                    return Outcome::Refused;
                }
            }
        }
        self.stack[top] = Frame::Str {
            node,
            len,
            esc,
            need,
            cp,
            pat,
        };
        Outcome::Took
    }

    fn number(&mut self, g: &Grammar, top: usize, frame: Frame, b: u8) -> Outcome {
        let Frame::Num {
            node,
            phase,
            neg,
            idig,
            fdig,
            mant,
        } = frame
        else {
            return Outcome::Refused;
        };
        let Node::Number { integer, .. } = g.nodes[node as usize] else {
            return Outcome::Refused;
        };
        let next = match (phase, b) {
            (0, b'-') => Some(Frame::Num {
                node,
                phase: 1,
                neg: true,
                idig,
                fdig,
                mant,
            }),
            (0 | 1, b'0'..=b'9') => Some(Frame::Num {
                node,
                phase: 2,
                neg,
                idig: 1,
                fdig,
                mant: u64::from(b - b'0'),
            }),
            (2, b'0'..=b'9') if mant != 0 && idig < MAX_INT_DIGITS => Some(Frame::Num {
                node,
                phase: 2,
                neg,
                idig: idig + 1,
                fdig,
                mant: mant.saturating_mul(10).saturating_add(u64::from(b - b'0')),
            }),
            (2, b'.') if !integer => Some(Frame::Num {
                node,
                phase: 3,
                neg,
                idig,
                fdig,
                mant,
            }),
            (3 | 4, b'0'..=b'9') if fdig < MAX_FRAC_DIGITS => Some(Frame::Num {
                node,
                phase: 4,
                neg,
                idig,
                fdig: fdig + 1,
                mant: mant.saturating_mul(10).saturating_add(u64::from(b - b'0')),
            }),
            _ => None,
        };
        match next {
            Some(f) if num_viable(g, &f) => {
                self.stack[top] = f;
                Outcome::Took
            }
            Some(_) => Outcome::Refused,
            None if num_can_close(g, &frame) => {
                self.pop();
                Outcome::Again
            }
            None => Outcome::Refused,
        }
    }

    fn object(&mut self, g: &Grammar, top: usize, frame: Frame, b: u8) -> Outcome {
        let Frame::Obj {
            node,
            used,
            phase,
            key,
        } = frame
        else {
            return Outcome::Refused;
        };
        let Node::Object {
            props,
            keys,
            required,
            free,
        } = &g.nodes[node as usize]
        else {
            return Outcome::Refused;
        };
        let all = if props.len() == 64 {
            u64::MAX
        } else {
            (1u64 << props.len()) - 1
        };
        let set = |m: &mut Matcher, phase: u8, used: u64, key: u32| {
            m.stack[top] = Frame::Obj {
                node,
                used,
                phase,
                key,
            };
        };
        let trie = &g.tries[*keys as usize];
        match (phase, b) {
            (0, b'{') => {
                set(self, 1, used, 0);
                Outcome::Took
            }
            (1 | 4, b'}') if used & required == *required => {
                self.pop();
                Outcome::Took
            }
            (4, b',') if free.is_some() || used != all => {
                set(self, 5, used, 0);
                Outcome::Took
            }
            (5, b' ') => {
                set(self, 6, used, 0);
                Outcome::Took
            }
            (1 | 6, b'"') => {
                if let Some(v) = free {
                    set(self, 4, used, 0);
                    let ok = self.push(Frame::Value(*v))
                        && self.push(Frame::Fixed {
                            which: F_COLON,
                            pos: 0,
                        })
                        && self.push(Frame::Str {
                            node: FREE_KEY,
                            len: 0,
                            esc: 0,
                            need: 0,
                            cp: 0,
                            pat: 0,
                        });
                    return if ok { Outcome::Took } else { Outcome::Refused };
                }
                self.key_byte(g, top, node, used, 0, b)
            }
            (2, _) => self.key_byte(g, top, node, used, key, b),
            _ => {
                let _ = trie;
                Outcome::Refused
            }
        }
    }

    /// One byte of a declared key (spelled with its quotes).
    fn key_byte(
        &mut self,
        g: &Grammar,
        top: usize,
        node: NodeId,
        used: u64,
        at: u32,
        b: u8,
    ) -> Outcome {
        let Node::Object { props, keys, .. } = &g.nodes[node as usize] else {
            return Outcome::Refused;
        };
        let t = &g.tries[*keys as usize];
        let Some(n) = t.child(at, b) else {
            return Outcome::Refused;
        };
        let tn = &t.nodes[n as usize];
        if tn.below & !used == 0 {
            return Outcome::Refused; // only keys already given lie this way
        }
        match tn.value {
            Some(i) if tn.children.is_empty() => {
                self.stack[top] = Frame::Obj {
                    node,
                    used: used | (1 << i),
                    phase: 4,
                    key: 0,
                };
                let ok = self.push(Frame::Value(props[i as usize].value))
                    && self.push(Frame::Fixed {
                        which: F_COLON,
                        pos: 0,
                    });
                if ok {
                    Outcome::Took
                } else {
                    Outcome::Refused
                }
            }
            _ => {
                self.stack[top] = Frame::Obj {
                    node,
                    used,
                    phase: 2,
                    key: n,
                };
                Outcome::Took
            }
        }
    }
}

enum Outcome {
    Took,
    Refused,
    /// The frame ended without using the byte: hand it to the frame below.
    Again,
}

/// (minLength, maxLength, pattern, grounded) of a string node.
fn str_bounds(g: &Grammar, node: NodeId) -> (u32, u32, Option<u32>, bool) {
    if node == FREE_KEY {
        return (0, FREE_KEY_MAX, None, false);
    }
    match g.nodes[node as usize] {
        Node::String {
            min,
            max,
            pattern,
            grounded,
        } => (min, max, pattern, grounded),
        _ => (0, 0, None, false),
    }
}

/// A grounded string's state (in `Frame::Str::pat`): its state in the
/// reference's substring index (0: the empty string). One more byte `b`: the
/// state of value + `b`, if that still occurs in the reference.
fn ground_step(g: &Grammar, state: u64, b: u8) -> Option<u64> {
    g.grounding.step(state as u32, b).map(u64::from)
}

/// The number so far, as a magnitude.
fn magnitude(mant: u64, fdig: u8) -> f64 {
    mant as f64 / pow10(i32::from(fdig))
}

/// Some completion of this number prefix lies within the node's range.
fn num_viable(g: &Grammar, f: &Frame) -> bool {
    let Frame::Num {
        node,
        phase,
        neg,
        idig,
        fdig,
        mant,
    } = *f
    else {
        return false;
    };
    let Node::Number {
        integer,
        min,
        max,
        excl_min,
        excl_max,
        multiple,
    } = g.nodes[node as usize]
    else {
        return false;
    };
    let eps = 1e-9;
    // magnitude intervals [a, b] reachable from here
    let mut spans: Vec<(f64, f64)> = Vec::new();
    match phase {
        1 => spans.push((0.0, f64::INFINITY)),
        2 => {
            if mant == 0 {
                spans.push((0.0, if integer { 0.0 } else { 1.0 - eps }));
            } else {
                for j in 0..=(MAX_INT_DIGITS - idig) as i32 {
                    let a = mant as f64 * pow10(j);
                    let w = pow10(j);
                    let b = if integer { a + w - 1.0 } else { a + w - eps };
                    spans.push((a, b));
                }
            }
        }
        3 => {
            let a = mant as f64;
            spans.push((a, a + 1.0 - eps));
        }
        4 => {
            let a = magnitude(mant, fdig);
            let b = if fdig < MAX_FRAC_DIGITS {
                a + pow10(-i32::from(fdig)) - eps * pow10(-i32::from(fdig))
            } else {
                a
            };
            spans.push((a, b));
        }
        _ => return true,
    }
    spans.iter().any(|&(a, b)| {
        let (lo, hi) = if neg { (-b, -a) } else { (a, b) };
        let above_min = if excl_min { hi > min } else { hi >= min };
        let below_max = if excl_max { lo < max } else { lo <= max };
        above_min
            && below_max
            && multiple.is_none_or(|m| {
                // some multiple of m lies in the reachable part of the range
                let (lo, hi) = (lo.max(min), hi.min(max));
                let k = (lo / m - 1e-9).ceil();
                k * m <= hi + 1e-9 * m.max(1.0)
            })
    })
}

/// The number may end here: digits present, within range, a multiple.
fn num_can_close(g: &Grammar, f: &Frame) -> bool {
    let Frame::Num {
        node,
        phase,
        neg,
        fdig,
        mant,
        ..
    } = *f
    else {
        return false;
    };
    let Node::Number {
        min,
        max,
        excl_min,
        excl_max,
        multiple,
        ..
    } = g.nodes[node as usize]
    else {
        return false;
    };
    if phase != 2 && phase != 4 {
        return false;
    }
    let x = if neg { -1.0 } else { 1.0 } * magnitude(mant, fdig);
    let in_range =
        (if excl_min { x > min } else { x >= min }) && (if excl_max { x < max } else { x <= max });
    in_range
        && multiple.is_none_or(|m| {
            let q = x / m;
            (q - q.round()).abs() <= 1e-9 * q.round().abs().max(1.0)
        })
}
