//! The vocabulary as bytes: each token's byte string (byte-level BPE
//! decoding done once), the special tokens a constraint cares about, and a
//! byte trie over the ordinary tokens so a mask is one walk of the trie.

use std::collections::HashMap;

use tokenizers::Tokenizer;

use super::ConstrainError;

/// A bit per token id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    bits: Vec<u64>,
    len: usize,
}

impl Mask {
    pub fn new(len: usize) -> Mask {
        Mask {
            bits: vec![0; len.div_ceil(64)],
            len,
        }
    }
    pub fn set(&mut self, id: u32) {
        let i = id as usize;
        if i < self.len {
            self.bits[i / 64] |= 1 << (i % 64);
        }
    }
    pub fn get(&self, id: u32) -> bool {
        let i = id as usize;
        i < self.len && self.bits[i / 64] & (1 << (i % 64)) != 0
    }
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }
    /// Adds every token of `o`.
    pub fn or(&mut self, o: &Mask) {
        for (a, b) in self.bits.iter_mut().zip(&o.bits) {
            *a |= b;
        }
    }
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len as u32).filter(|&i| self.get(i))
    }
}

/// The special tokens the constraint steers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specials {
    pub call_open: u32,
    pub call_close: u32,
    pub fallback: Option<u32>,
    /// End of turn (`<|im_end|>`, `<|endoftext|>`, the manifest's eos).
    pub eos: Vec<u32>,
}

#[derive(Debug, Default)]
struct TrieNode {
    children: Vec<(u8, u32)>,
    token: Option<u32>,
}

/// Token bytes, specials and the byte trie of one tokenizer.
#[derive(Debug)]
pub struct Vocab {
    /// Bytes of every token id (specials: their text, never walked).
    bytes: Vec<Vec<u8>>,
    /// Ids that are never ordinary text (added special tokens).
    special: Vec<bool>,
    pub specials: Specials,
    trie: Vec<TrieNode>,
    longest: usize,
}

/// GPT-2's byte ↔ printable-char table: the inverse (char → byte).
fn byte_level_decoder() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.iter()
        .zip(&cs)
        .map(|(&b, &c)| (char::from_u32(c).expect("table char"), b as u8))
        .collect()
}

impl Vocab {
    /// Reads a byte-level BPE tokenizer. `eos` are the manifest's end tokens.
    pub fn from_tokenizer(tok: &Tokenizer, eos: &[u32]) -> Result<Vocab, ConstrainError> {
        let table = byte_level_decoder();
        let vocab = tok.get_vocab(true);
        let size = vocab.values().copied().max().map_or(0, |m| m as usize + 1);
        let mut bytes = vec![Vec::new(); size];
        let mut special = vec![false; size];
        let added = tok.get_added_tokens_decoder();
        for (s, &id) in &vocab {
            if let Some(a) = added.get(&id) {
                bytes[id as usize] = a.content.as_bytes().to_vec();
                special[id as usize] = true;
                continue;
            }
            let b: Option<Vec<u8>> = s.chars().map(|c| table.get(&c).copied()).collect();
            let Some(b) = b else {
                return Err(ConstrainError::Vocab(format!(
                    "token {id} {s:?} is not byte-level BPE"
                )));
            };
            bytes[id as usize] = b;
        }
        let find = |text: &str| vocab.get(text).copied().filter(|&id| special[id as usize]);
        let call_open = find("<tool_call>").ok_or_else(|| {
            ConstrainError::Vocab("<tool_call> is not a single added token".into())
        })?;
        let call_close = find("</tool_call>").ok_or_else(|| {
            ConstrainError::Vocab("</tool_call> is not a single added token".into())
        })?;
        let mut eos: Vec<u32> = eos.to_vec();
        for t in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = find(t) {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        let specials = Specials {
            call_open,
            call_close,
            fallback: find("<|fallback|>"),
            eos,
        };
        Ok(Vocab::new(bytes, special, specials))
    }

    /// From raw parts (tests, other tokenizers).
    pub fn new(bytes: Vec<Vec<u8>>, special: Vec<bool>, specials: Specials) -> Vocab {
        let mut trie = vec![TrieNode::default()];
        for (id, b) in bytes.iter().enumerate() {
            if special[id] || b.is_empty() {
                continue;
            }
            let mut at = 0usize;
            for &c in b {
                at = match trie[at].children.iter().find(|(x, _)| *x == c) {
                    Some(&(_, n)) => n as usize,
                    None => {
                        trie.push(TrieNode::default());
                        let n = trie.len() - 1;
                        trie[at].children.push((c, n as u32));
                        n
                    }
                };
            }
            trie[at].token = Some(id as u32);
        }
        let longest = bytes
            .iter()
            .zip(&special)
            .filter(|(_, s)| !**s)
            .map(|(b, _)| b.len())
            .max()
            .unwrap_or(0);
        Vocab {
            bytes,
            special,
            specials,
            trie,
            longest,
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// Bytes of the longest ordinary token.
    pub fn longest_token(&self) -> usize {
        self.longest
    }
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(true)
    }

    /// Sets in `mask` every ordinary token whose bytes `state` accepts, in one trie walk.
    pub fn walk<S: Clone>(&self, state: &S, feed: &impl Fn(&mut S, u8) -> bool, mask: &mut Mask) {
        self.walk_from(0, state, feed, mask);
    }

    fn walk_from<S: Clone>(
        &self,
        node: usize,
        state: &S,
        feed: &impl Fn(&mut S, u8) -> bool,
        mask: &mut Mask,
    ) {
        for &(b, child) in &self.trie[node].children {
            let mut s = state.clone();
            if feed(&mut s, b) {
                let c = &self.trie[child as usize];
                if let Some(id) = c.token {
                    mask.set(id);
                }
                if !c.children.is_empty() {
                    self.walk_from(child as usize, &s, feed, mask);
                }
            }
        }
    }
}
