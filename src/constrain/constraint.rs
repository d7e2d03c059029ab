//! One generation's constraint: which tokens may come next ([`Constraint::mask`])
//! and the state after each chosen token ([`Constraint::advance`]).
//!
//! Around the JSON matcher sits the answer's outline: free text (never
//! spelling a marker), `<|fallback|>`, `<tool_call>` + a call +
//! `</tool_call>` (then another call or the end of turn), or, for
//! `response_format`, one bare JSON value. `tool_choice` picks the outline:
//! auto (text, fallback or calls), required / a named function (a call or the
//! fallback marker first; the named one is the only name), none (no call).

use std::sync::Arc;

use super::grammar::Grammar;
use super::matcher::Matcher;
use super::vocab::{Mask, Vocab};
use super::ConstrainError;

/// Masks cached per grammar before the cache is emptied.
const CACHE_LIMIT: usize = 2048;

/// What the request allows: the part of a request a constraint is built from.
#[derive(Debug, Clone)]
pub enum Spec {
    /// Tools offered: calls are constrained by `grammar`.
    Tools {
        grammar: Arc<Grammar>,
        /// `required` or a named function: the answer starts with a call (or the fallback marker).
        must_call: bool,
        /// More than one call per answer (`parallel_tool_calls`, default true).
        parallel: bool,
    },
    /// `tool_choice: none` (or no tools but a plain request): no call may be written.
    NoCalls,
    /// `response_format` json_schema / json_object: one JSON value.
    Json { grammar: Arc<Grammar> },
}

impl PartialEq for Spec {
    fn eq(&self, o: &Spec) -> bool {
        match (self, o) {
            (
                Spec::Tools {
                    grammar: a,
                    must_call: m1,
                    parallel: p1,
                },
                Spec::Tools {
                    grammar: b,
                    must_call: m2,
                    parallel: p2,
                },
            ) => Arc::ptr_eq(a, b) && m1 == m2 && p1 == p2,
            (Spec::NoCalls, Spec::NoCalls) => true,
            (Spec::Json { grammar: a }, Spec::Json { grammar: b }) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    /// Nothing generated yet.
    Start,
    /// Plain text so far.
    Text,
    /// Inside `<tool_call>`.
    Call,
    /// After `</tool_call>`.
    AfterCall,
    AfterFallback,
    Json,
    /// End of turn chosen.
    Done,
}

/// Time and work of mask computation in one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MaskStats {
    pub masks: u64,
    pub cache_hits: u64,
    pub nanos: u64,
}

#[derive(Debug)]
pub struct Constraint {
    spec: Spec,
    g: Arc<Grammar>,
    vocab: Arc<Vocab>,
    phase: Phase,
    matcher: Matcher,
    text: Matcher,
    mask: Mask,
    use_cache: bool,
    pub stats: MaskStats,
}

/// An empty grammar for the text-only outlines (the matcher is never used).
fn no_grammar() -> Arc<Grammar> {
    static G: std::sync::OnceLock<Arc<Grammar>> = std::sync::OnceLock::new();
    G.get_or_init(|| {
        Arc::new(Grammar {
            nodes: Vec::new(),
            tries: Vec::new(),
            patterns: Vec::new(),
            masks: Default::default(),
            top: super::grammar::Top::Json { root: 0 },
            grounding: Default::default(),
        })
    })
    .clone()
}

impl Constraint {
    pub fn new(spec: Spec, vocab: Arc<Vocab>) -> Constraint {
        let (phase, matcher) = match &spec {
            Spec::Json { grammar } => (Phase::Json, Matcher::start(grammar)),
            _ => (Phase::Start, Matcher::text()),
        };
        let n = vocab.len();
        let g = match &spec {
            Spec::Tools { grammar, .. } | Spec::Json { grammar } => grammar.clone(),
            Spec::NoCalls => no_grammar(),
        };
        Constraint {
            spec,
            g,
            vocab,
            phase,
            matcher,
            text: Matcher::text(),
            mask: Mask::new(n),
            use_cache: true,
            stats: MaskStats::default(),
        }
    }

    fn grammar(&self) -> Arc<Grammar> {
        self.g.clone()
    }

    fn may_call(&self) -> bool {
        matches!(self.spec, Spec::Tools { .. })
    }

    fn text_allowed(&self) -> bool {
        match &self.spec {
            Spec::Tools { must_call, .. } => !must_call,
            Spec::NoCalls => true,
            Spec::Json { .. } => false,
        }
    }

    /// Copies another constraint's position (tests probe single tokens from it).
    #[cfg(test)]
    pub(crate) fn phase_from(&mut self, o: &Constraint) {
        self.phase = o.phase;
        self.matcher = o.matcher;
        self.text = o.text;
    }

    /// Turns the per-generation mask cache on or off (benchmarks measure both).
    pub fn set_cache(&mut self, on: bool) {
        self.use_cache = on;
    }

    /// The token to write instead of what the mask would pick, if any. Under
    /// `tool_choice: none` a model that wants to open a call (`<tool_call>` is
    /// the argmax of `logits` at the first position) gets the fallback marker: a
    /// device model trained to call tools has no text answer for such a request,
    /// and the marker sends it up the cascade instead of decoding noise until
    /// `max_tokens`. Everything else: `None`.
    pub fn divert(&self, logits: &[f32]) -> Option<u32> {
        if self.phase != Phase::Start || !matches!(self.spec, Spec::NoCalls) {
            return None;
        }
        let sp = &self.vocab.specials;
        let best = crate::engine::sampler::argmax(logits);
        if best == sp.call_open {
            sp.fallback
        } else {
            None
        }
    }

    /// The answer is complete (end of turn chosen).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The tokens allowed next.
    pub fn mask(&mut self) -> &Mask {
        let clock = std::time::Instant::now();
        let sp = self.vocab.specials.clone();
        let g = self.grammar();
        let mut mask = Mask::new(self.vocab.len());
        let mut bytes_from: Option<Matcher> = None;
        let eos = |m: &mut Mask| sp.eos.iter().for_each(|&e| m.set(e));
        match self.phase {
            Phase::Start | Phase::Text => {
                if self.may_call() {
                    mask.set(sp.call_open);
                }
                if let Some(f) = sp.fallback {
                    mask.set(f);
                }
                if self.text_allowed() {
                    bytes_from = Some(self.text);
                    if self.phase == Phase::Text {
                        eos(&mut mask);
                    }
                }
            }
            Phase::Call => {
                if self.matcher.is_done() {
                    mask.set(sp.call_close);
                } else {
                    bytes_from = Some(self.matcher);
                }
            }
            Phase::AfterCall => {
                if matches!(self.spec, Spec::Tools { parallel: true, .. }) {
                    mask.set(sp.call_open);
                }
                eos(&mut mask);
            }
            Phase::AfterFallback => eos(&mut mask),
            Phase::Json => {
                if self.matcher.can_end(&g) {
                    eos(&mut mask);
                }
                if !self.matcher.is_done() {
                    bytes_from = Some(self.matcher);
                }
            }
            Phase::Done => eos(&mut mask),
        }
        if let Some(m) = bytes_from {
            let key = (
                Arc::as_ptr(&self.vocab) as usize,
                m.cache_key(&g, self.vocab.longest_token()),
            );
            let hit = if self.use_cache {
                g.masks.lock().ok().and_then(|c| c.get(&key).cloned())
            } else {
                None
            };
            if let Some(cached) = hit {
                self.stats.cache_hits += 1;
                mask.or(&cached);
            } else {
                let mut bytes = Mask::new(self.vocab.len());
                self.vocab
                    .walk(&m, &|s: &mut Matcher, b| s.feed(&g, b), &mut bytes);
                mask.or(&bytes);
                if self.use_cache {
                    if let Ok(mut c) = g.masks.lock() {
                        if c.len() >= CACHE_LIMIT {
                            c.clear();
                        }
                        c.insert(key, bytes);
                    }
                }
            }
        }
        self.mask = mask;
        self.stats.masks += 1;
        self.stats.nanos += clock.elapsed().as_nanos() as u64;
        &self.mask
    }

    /// Moves past `tok`; an error when the constraint does not allow it.
    pub fn advance(&mut self, tok: u32) -> Result<(), ConstrainError> {
        let sp = &self.vocab.specials;
        let refused = || ConstrainError::Refused {
            token: tok,
            at: format!("{:?}", self.phase),
        };
        if sp.eos.contains(&tok) {
            let ok = match self.phase {
                Phase::Text | Phase::AfterCall | Phase::AfterFallback | Phase::Done => true,
                Phase::Json => self.matcher.can_end(&self.grammar()),
                Phase::Start | Phase::Call => false,
            };
            if !ok {
                return Err(refused());
            }
            self.phase = Phase::Done;
            return Ok(());
        }
        let g = self.grammar();
        match self.phase {
            Phase::Start | Phase::Text if tok == sp.call_open && self.may_call() => {
                self.phase = Phase::Call;
                self.matcher = Matcher::start(&g);
            }
            Phase::AfterCall
                if tok == sp.call_open
                    && matches!(self.spec, Spec::Tools { parallel: true, .. }) =>
            {
                self.phase = Phase::Call;
                self.matcher = Matcher::start(&g);
            }
            Phase::Start | Phase::Text if Some(tok) == sp.fallback => {
                self.phase = Phase::AfterFallback;
            }
            Phase::Call if tok == sp.call_close && self.matcher.is_done() => {
                self.phase = Phase::AfterCall;
            }
            Phase::Start | Phase::Text if self.text_allowed() && !self.vocab.is_special(tok) => {
                let mut t = self.text;
                if !self.vocab.token_bytes(tok).iter().all(|&b| t.feed(&g, b)) {
                    return Err(refused());
                }
                self.text = t;
                self.phase = Phase::Text;
            }
            Phase::Call | Phase::Json if !self.vocab.is_special(tok) => {
                let mut m = self.matcher;
                if !self.vocab.token_bytes(tok).iter().all(|&b| m.feed(&g, b)) {
                    return Err(refused());
                }
                self.matcher = m;
            }
            _ => return Err(refused()),
        }
        Ok(())
    }
}
