//! Tokenizer input and model output: arbitrary text through the bundled
//! tokenizer (encode, decode of the ids, decode of arbitrary ids) and the
//! tool-call parser that reads what the model generated.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use moe_edge::engine::toolcall::parse_output;
use tokenizers::Tokenizer;

static TOKENIZER: &[u8] = include_bytes!("../../models/assist-moe/bundle/tokenizer.json");

fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_bytes(TOKENIZER).expect("bundled tokenizer loads"))
}

fuzz_target!(|data: &[u8]| {
    let t = tokenizer();
    let text = String::from_utf8_lossy(data);
    if let Ok(enc) = t.encode(text.as_ref(), false) {
        let _ = t.decode(enc.get_ids(), false);
    }
    // Arbitrary ids (out of range included), as a broken model might emit.
    let ids: Vec<u32> = data
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .collect();
    let _ = t.decode(&ids, true);
    let _ = parse_output(&text);
});
