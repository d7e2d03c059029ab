//! The one harness of the integration tests (`tests/it/`, one binary):
//! real servers and real subprocesses, nothing faked. Each binary uses a part.

pub mod daemon;
pub mod golden;
pub mod mosquitto;
pub mod secure_broker;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use axum::body::{Body, Bytes};

use axum::response::Response;
use moe_edge::bundle::import::{import, ImportOptions};
use moe_edge::bundle::Dtype;

/// The repository root (fixtures, boards, the demo bundle).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Imports `tests/fixtures/{arch}` (a random-weight Hugging Face checkpoint)
/// into the bundle directory `out`.
pub fn import_fixture(arch: &str, out: &Path, dtype: Dtype, model_id: Option<&str>) -> PathBuf {
    import(&ImportOptions {
        hf_dir: repo().join("tests/fixtures").join(arch),
        out_dir: out.to_path_buf(),
        dtype,
        experts_dtype: None,
        model_id: model_id.map(str::to_string),
        force: true,
    })
    .unwrap_or_else(|e| panic!("import the {arch} fixture: {e}"));
    out.to_path_buf()
}

/// The random-weight Qwen3-MoE fixture imported once per test process, as
/// model `fixture-moe`.
pub fn fixture_bundle() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = tempfile::tempdir().unwrap().keep().join("bundle");
        import_fixture("qwen3_moe", &out, Dtype::F32, Some("fixture-moe"))
    })
}

/// A `text/event-stream` response sending `events` (whole `data: …\n\n`
/// strings) one after another, `gap` apart, from a real HTTP handler.
pub fn sse(events: Vec<String>, gap: Duration) -> Response {
    let stream = futures_util::stream::unfold(
        (events.into_iter(), true),
        move |(mut it, first)| async move {
            let e = it.next()?;
            if !first {
                tokio::time::sleep(gap).await;
            }
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(e)),
                (it, false),
            ))
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Runs `moe-edge plan` (the built binary) on `bundle` for board `host-cpu`
/// keeping `fraction` of the experts; writes `DIR/plan.json` and the pruned
/// device bundle `DIR/NAME`, which it returns.
pub fn plan_device_bundle(bundle: &Path, fraction: f32, dir: &Path, name: &str) -> PathBuf {
    plan_device_bundle_with(bundle, fraction, dir, name, &[])
}

/// [`plan_device_bundle`] with more `plan` flags (e.g. `--lowp DIR`).
pub fn plan_device_bundle_with(
    bundle: &Path,
    fraction: f32,
    dir: &Path,
    name: &str,
    extra: &[&std::ffi::OsStr],
) -> PathBuf {
    let out = dir.join(name);
    let st = Command::new(env!("CARGO_BIN_EXE_moe-edge"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "plan",
            "--board",
            "host-cpu",
            "--gen-tokens",
            "4",
            "--force",
        ])
        .arg("--fraction")
        .arg(fraction.to_string())
        .arg("--bundle")
        .arg(bundle)
        .arg("--out")
        .arg(dir.join("plan.json"))
        .arg("--device-bundle")
        .arg(&out)
        .args(extra)
        .stdout(Stdio::null())
        .status()
        .expect("run moe-edge plan");
    assert!(
        st.success(),
        "moe-edge plan {extra:?} failed for {}",
        bundle.display()
    );
    out
}
