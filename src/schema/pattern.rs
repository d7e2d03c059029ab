//! ECMA-style regular expressions for JSON schema's `pattern`: a parser and a
//! small backtracking matcher, without look-around or back-references.
//! Owns the syntax tree ([`Node`]) that `constrain` compiles into an automaton.
//! Does not own schema validation (the parent module).

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    /// Not a regular expression (unbalanced brackets, dangling quantifier, ...).
    Invalid(String),
    /// Valid ECMA syntax this matcher does not implement (look-around, back-references).
    Unsupported(String),
}

/// A compiled pattern: ECMA-style regular expressions without look-around or
/// back-references. Unanchored, as JSON schema's `pattern` is.
#[derive(Debug, Clone)]
pub struct Pattern {
    node: Node,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Char(char),
    Any,
    Class(Vec<ClassItem>, bool),
    Start,
    End,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat(Box<Node>, u32, Option<u32>),
}

#[derive(Debug, Clone)]
pub(crate) enum ClassItem {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

impl ClassItem {
    pub(crate) fn matches(&self, c: char) -> bool {
        match *self {
            ClassItem::Range(a, b) => a <= c && c <= b,
            ClassItem::Digit(neg) => c.is_ascii_digit() != neg,
            ClassItem::Word(neg) => (c.is_ascii_alphanumeric() || c == '_') != neg,
            ClassItem::Space(neg) => c.is_whitespace() != neg,
        }
    }
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    _src: &'a str,
}

impl Pattern {
    pub fn new(src: &str) -> Result<Pattern, PatternError> {
        let mut p = Parser {
            chars: src.chars().collect(),
            pos: 0,
            _src: src,
        };
        let node = p.alt()?;
        if p.pos < p.chars.len() {
            return Err(PatternError::Invalid(format!("unmatched ')' at {}", p.pos)));
        }
        Ok(Pattern { node })
    }

    /// The parsed expression (for `constrain`, which compiles it to an NFA).
    pub(crate) fn root(&self) -> &Node {
        &self.node
    }

    /// Whether the pattern matches anywhere in `s`.
    pub fn is_match(&self, s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        let mut budget: u64 = 1_000_000;
        (0..=chars.len()).any(|start| m(&self.node, &chars, start, &mut budget, &mut |_, _| true))
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alt(&mut self) -> Result<Node, PatternError> {
        let mut options = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            options.push(self.concat()?);
        }
        Ok(if options.len() == 1 {
            options.pop().expect("one")
        } else {
            Node::Alt(options)
        })
    }

    fn concat(&mut self) -> Result<Node, PatternError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            let atom = self.quantifier(atom)?;
            items.push(atom);
        }
        Ok(Node::Concat(items))
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return None;
        }
        self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .parse()
            .ok()
    }

    fn quantifier(&mut self, atom: Node) -> Result<Node, PatternError> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                let save = self.pos;
                self.pos += 1;
                let Some(min) = self.number() else {
                    self.pos = save;
                    return Ok(atom); // a literal '{', as ECMA's annex B allows
                };
                let max = if self.peek() == Some(',') {
                    self.pos += 1;
                    self.number()
                } else {
                    Some(min)
                };
                if self.peek() != Some('}') {
                    self.pos = save;
                    return Ok(atom);
                }
                if max.is_some_and(|mx| mx < min) {
                    return Err(PatternError::Invalid(format!(
                        "{{{min},{}}} is out of order",
                        max.unwrap_or(0)
                    )));
                }
                (min, max)
            }
            _ => return Ok(atom),
        };
        if matches!(atom, Node::Start | Node::End) {
            return Err(PatternError::Invalid("nothing to repeat".into()));
        }
        self.pos += 1;
        if self.peek() == Some('?') {
            self.pos += 1; // lazy: same set of matches for a yes/no answer
        }
        if matches!(self.peek(), Some('*' | '+' | '?')) {
            return Err(PatternError::Invalid("nothing to repeat".into()));
        }
        Ok(Node::Repeat(Box::new(atom), min, max))
    }

    fn atom(&mut self) -> Result<Node, PatternError> {
        let c = self.peek().expect("caller checked");
        self.pos += 1;
        Ok(match c {
            '^' => Node::Start,
            '$' => Node::End,
            '.' => Node::Any,
            '(' => {
                if self.peek() == Some('?') {
                    self.pos += 1;
                    match self.peek() {
                        Some(':') => self.pos += 1,
                        Some('=' | '!' | '<') => {
                            return Err(PatternError::Unsupported("look-around".into()))
                        }
                        _ => return Err(PatternError::Invalid("unknown group syntax '(?'".into())),
                    }
                }
                let inner = self.alt()?;
                if self.peek() != Some(')') {
                    return Err(PatternError::Invalid("missing ')'".into()));
                }
                self.pos += 1;
                inner
            }
            '[' => self.class()?,
            '\\' => match self.escape()? {
                Esc::Char(c) => Node::Char(c),
                Esc::Item(i) => Node::Class(vec![i], false),
            },
            '*' | '+' | '?' => return Err(PatternError::Invalid("nothing to repeat".into())),
            other => Node::Char(other),
        })
    }

    fn escape(&mut self) -> Result<Esc, PatternError> {
        let Some(c) = self.peek() else {
            return Err(PatternError::Invalid("trailing backslash".into()));
        };
        self.pos += 1;
        Ok(match c {
            'd' => Esc::Item(ClassItem::Digit(false)),
            'D' => Esc::Item(ClassItem::Digit(true)),
            'w' => Esc::Item(ClassItem::Word(false)),
            'W' => Esc::Item(ClassItem::Word(true)),
            's' => Esc::Item(ClassItem::Space(false)),
            'S' => Esc::Item(ClassItem::Space(true)),
            'n' => Esc::Char('\n'),
            't' => Esc::Char('\t'),
            'r' => Esc::Char('\r'),
            'f' => Esc::Char('\x0c'),
            'v' => Esc::Char('\x0b'),
            '0' => Esc::Char('\0'),
            'u' | 'x' => {
                let n = if c == 'u' { 4 } else { 2 };
                let hex: String = self
                    .chars
                    .get(self.pos..self.pos + n)
                    .unwrap_or(&[])
                    .iter()
                    .collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == n)
                    .and_then(char::from_u32)
                    .ok_or_else(|| PatternError::Invalid(format!("bad \\{c} escape")))?;
                self.pos += n;
                Esc::Char(code)
            }
            'b' | 'B' => return Err(PatternError::Unsupported("word boundaries".into())),
            '1'..='9' | 'k' => return Err(PatternError::Unsupported("back-references".into())),
            'p' | 'P' => return Err(PatternError::Unsupported("unicode property classes".into())),
            c if c.is_ascii_alphanumeric() => {
                return Err(PatternError::Invalid(format!("unknown escape \\{c}")))
            }
            other => Esc::Char(other),
        })
    }

    fn class(&mut self) -> Result<Node, PatternError> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(PatternError::Invalid("missing ']'".into()));
            };
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = match c {
                '\\' => match self.escape()? {
                    Esc::Char(c) => c,
                    Esc::Item(i) => {
                        items.push(i);
                        continue;
                    }
                },
                ']' => {
                    // `[]` matches nothing in ECMA; `[^]` anything.
                    return Ok(Node::Class(Vec::new(), negated));
                }
                c => c,
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&n| n != ']') {
                self.pos += 1;
                let hc = self.peek().expect("checked");
                self.pos += 1;
                let hi = if hc == '\\' {
                    match self.escape()? {
                        Esc::Char(c) => c,
                        Esc::Item(_) => {
                            return Err(PatternError::Invalid("class escape in a range".into()))
                        }
                    }
                } else {
                    hc
                };
                if hi < lo {
                    return Err(PatternError::Invalid(format!(
                        "range {lo}-{hi} out of order"
                    )));
                }
                items.push(ClassItem::Range(lo, hi));
            } else {
                items.push(ClassItem::Range(lo, lo));
            }
        }
        Ok(Node::Class(items, negated))
    }
}

enum Esc {
    Char(char),
    Item(ClassItem),
}

/// Matches `node` at `pos`, calling `k` with each end position until it
/// accepts. `budget` bounds the work on pathological patterns (then: no match).
fn m(
    node: &Node,
    s: &[char],
    pos: usize,
    budget: &mut u64,
    k: &mut dyn FnMut(usize, &mut u64) -> bool,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    match node {
        Node::Char(c) => s.get(pos) == Some(c) && k(pos + 1, budget),
        Node::Any => s.get(pos).is_some_and(|&c| c != '\n' && c != '\r') && k(pos + 1, budget),
        Node::Class(items, neg) => {
            s.get(pos)
                .is_some_and(|&c| items.iter().any(|i| i.matches(c)) != *neg)
                && k(pos + 1, budget)
        }
        Node::Start => pos == 0 && k(pos, budget),
        Node::End => pos == s.len() && k(pos, budget),
        Node::Concat(items) => concat(items, s, pos, budget, k),
        Node::Alt(options) => options.iter().any(|o| m(o, s, pos, budget, k)),
        Node::Repeat(inner, min, max) => repeat(inner, *min, *max, 0, s, pos, budget, k),
    }
}

fn concat(
    items: &[Node],
    s: &[char],
    pos: usize,
    budget: &mut u64,
    k: &mut dyn FnMut(usize, &mut u64) -> bool,
) -> bool {
    match items.split_first() {
        None => k(pos, budget),
        Some((first, rest)) => m(first, s, pos, budget, &mut |p, b| concat(rest, s, p, b, k)),
    }
}

#[allow(clippy::too_many_arguments)]
fn repeat(
    inner: &Node,
    min: u32,
    max: Option<u32>,
    count: u32,
    s: &[char],
    pos: usize,
    budget: &mut u64,
    k: &mut dyn FnMut(usize, &mut u64) -> bool,
) -> bool {
    // Greedy: one more first, then stop (if the minimum is met).
    if max.is_none_or(|mx| count < mx)
        && m(inner, s, pos, budget, &mut |p, b| {
            // An empty iteration cannot make progress: stop looping.
            p != pos && repeat(inner, min, max, count + 1, s, p, b, k)
        })
    {
        return true;
    }
    if count >= min {
        return k(pos, budget);
    }
    // Minimum not met but the inner node can match empty: count it as met.
    m(inner, s, pos, budget, &mut |p, b| p == pos && k(p, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let hhmm = Pattern::new("^([01][0-9]|2[0-3]):[0-5][0-9]$").unwrap();
        for t in ["00:00", "07:30", "19:59", "23:59"] {
            assert!(hhmm.is_match(t), "{t}");
        }
        for t in ["24:00", "7:30", "07:60", "07:300", " 07:30", "07-30", ""] {
            assert!(!hhmm.is_match(t), "{t}");
        }
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "xxabcxx", true),
            ("^abc", "xabc", false),
            ("^a.c$", "abc", true),
            ("^a.c$", "a\nc", false),
            ("^\\d{3}-\\d{4}$", "555-1234", true),
            ("^\\d{3}-\\d{4}$", "55-1234", false),
            ("^[A-Z]{2,}$", "AB", true),
            ("^[A-Z]{2,}$", "A", false),
            ("^[^0-9]+$", "abc", true),
            ("^[^0-9]+$", "ab1", false),
            ("^(ab)*c$", "ababc", true),
            ("^(ab)*c$", "abac", false),
            ("^(?:a|b)+$", "abba", true),
            ("^a?b+$", "bbb", true),
            ("^[\\w.-]+@[\\w-]+\\.[a-z]{2,}$", "a.b-c@x-y.com", true),
            ("^\\+?[0-9 ]{3,15}$", "+81 90 1234", true),
            ("^[a-z-]+$", "a-b", true),
            ("^\\u00e9$", "é", true),
            ("^(a*)*b$", "aaaaaaaaaaaaaaaaaaaaaaaaac", false),
            ("^$", "", true),
            ("x{2", "x{2", true),
            ("^(a|)+$", "aa", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(Pattern::new(p).unwrap().is_match(s), *want, "{p} on {s:?}");
        }
        for bad in ["(", "a)", "[a", "*a", "a**", "[z-a]", "\\q", "a{3,1}"] {
            assert!(
                matches!(Pattern::new(bad), Err(PatternError::Invalid(_))),
                "{bad}"
            );
        }
        for unsup in ["(?=a)", "\\bword", "(a)\\1", "\\p{L}"] {
            assert!(
                matches!(Pattern::new(unsup), Err(PatternError::Unsupported(_))),
                "{unsup}"
            );
        }
    }
}
