//! `manifest.json` of a bundle: parsed and checked before anything else of
//! the bundle is touched. Any input gives a manifest or an error naming the
//! file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moe_edge::bundle::Manifest;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/manifest.json");
    match Manifest::from_json(text, path) {
        Ok(m) => {
            let _ = m.check(path);
        }
        Err(e) => assert!(e.to_string().contains("manifest.json"), "{e}"),
    }
});
