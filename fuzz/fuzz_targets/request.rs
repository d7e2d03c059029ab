//! An app's request as the daemon sees it: the MQTT payload through
//! `ChatRequest::parse` (size, UTF-8, JSON, shape) and `validate`, and the
//! topic strings an app controls (the request topic, its reply topic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use moe_edge::openai::request::{ChatRequest, RequestLimits};
use moe_edge::wire::topics;

fuzz_target!(|data: &[u8]| {
    let limits = RequestLimits::default();
    if let Ok(req) = ChatRequest::parse(data, limits.max_body_bytes) {
        let _ = req.priority();
        let _ = req.text_messages();
        let _ = req.stop_sequences();
        if req.validate(&limits).is_ok() {
            let up = req.to_upstream("cloud-model");
            let v = up.to_value();
            // What we forward must parse again.
            ChatRequest::from_value(v).expect("to_upstream output re-parses");
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = topics::parse_chat_requests(s);
        let _ = topics::parse_expert_layer(s);
        if topics::validate_reply_topic(s).is_ok() {
            assert!(topics::parse_chat_requests(s).is_none());
            assert!(!s.contains(['+', '#', '\0']));
        }
        if topics::validate_app_reply_topic(s).is_ok() {
            assert!(!s.starts_with("moe-edge/") || s.starts_with("moe-edge/clients/"));
        }
    }
});
