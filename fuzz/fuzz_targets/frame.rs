//! The expert frame codec: whatever arrives on an expert topic (host side)
//! or a device's reply topic is decoded under loose and under tight limits.
//! Decoding must never panic, and a decoded frame never exceeds its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moe_edge::wire::frame::{decode, decode_reply, decode_request, Limits};

const TIGHT: Limits = Limits {
    max_tokens: 64,
    max_hidden: 256,
    max_experts: 16,
    max_layers: 4,
};

fuzz_target!(|data: &[u8]| {
    for limits in [Limits::LOOSE, TIGHT] {
        let _ = decode(data, &limits);
        let _ = decode_request(data, &limits);
        let _ = decode_reply(data, &limits);
    }
});
