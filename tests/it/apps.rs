//! Third-party clients against the daemon, as apps would connect: paho-mqtt
//! (MQTT 5 and 3.1.1) through `moe-edge bench serve`, which starts the
//! `moe-edge serve` binary on its embedded broker and on Mosquitto (as
//! `deploy/mosquitto/` configures it, and stock) and drives paho's probe for
//! every path. Here the figures do not matter (speed is the bench's job);
//! what is checked is that every request of every path got its reply, of the
//! kind it should.

use serde_json::Value;

use crate::harness::repo;

#[test]
fn paho_gets_every_reply_on_the_embedded_broker_and_on_mosquitto() {
    let Some(py) = std::env::var_os("MOE_EDGE_PYTHON") else {
        eprintln!("SKIPPED paho_gets_every_reply...: $MOE_EDGE_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let Some(mosquitto) = crate::harness::mosquitto::find_bin("mosquitto") else {
        eprintln!("SKIPPED paho_gets_every_reply...: mosquitto is not installed");
        return;
    };
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("serve.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moe-edge"))
        .current_dir(repo())
        .args([
            "bench",
            "serve",
            "--clients",
            "1",
            "--requests",
            "2",
            "--app-requests",
            "2",
        ])
        .arg("--python")
        .arg(&py)
        .arg("--mosquitto")
        .arg(&mosquitto)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench serve failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    assert!(
        !stdout.contains("| nominal | 1 | 2 | 0 |"),
        "the load phase got no completion:\n{stdout}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = report["app"].as_array().expect("app rows");
    for broker in [
        "embedded",
        "mosquitto (set_tcp_nodelay)",
        "mosquitto (stock config)",
    ] {
        let mine: Vec<&Value> = rows.iter().filter(|r| r["broker"] == broker).collect();
        assert_eq!(mine.len(), 9, "{broker}: every path measured: {rows:?}");
        for r in mine {
            let what = format!("{broker} / {} / MQTT {}", r["path"], r["mqtt"]);
            assert_eq!(r["lost"], 0, "{what}: requests without a reply: {r}");
            assert_eq!(r["n"], 2, "{what}: {r}");
            let path = r["path"].as_str().unwrap();
            if path.starts_with("error") {
                let codes = r["error_codes"].as_object().unwrap();
                let code = if r["mqtt"] == "5" {
                    "invalid_json"
                } else {
                    "invalid_request"
                };
                assert_eq!(
                    codes.get(code).and_then(Value::as_u64),
                    Some(2),
                    "{what}: {r}"
                );
            } else if !path.starts_with("echo") {
                assert!(
                    r["engine_p50_ms"].as_f64().is_some_and(|t| t > 0.0),
                    "{what}: no daemon timings: {r}"
                );
                assert!(
                    r["error_codes"].as_object().unwrap().is_empty(),
                    "{what}: {r}"
                );
            }
        }
    }
}
