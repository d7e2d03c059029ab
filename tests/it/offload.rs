//! Remote experts with real processes: the embedded rumqttd in this process,
//! `moe-edge host --broker` spawned as child processes, a device engine on a
//! pruned bundle (25 % of the experts, written by `moe-edge plan`) whose
//! missing experts go over MQTT. Nothing depends on exact model answers, only
//! on equivalence with the full model run locally.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use moe_edge::bundle::Verify;
use moe_edge::config::{Board, OnLate, OnMiss, Prefetch};
use moe_edge::engine::model::StepTimes;
use moe_edge::engine::sampler::argmax;
use moe_edge::engine::{Engine, ExpertCounts, GenParams, Step};
use moe_edge::eval::golden::{read_golden, run_prompt};
use moe_edge::experts::remote::{MqttRemote, RemoteConfig};
use moe_edge::transport::{Broker, BrokerConfig, MqttConfig};
use moe_edge::wire::DeviceId;

const BIN: &str = env!("CARGO_BIN_EXE_moe-edge");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn full_bundle() -> PathBuf {
    Path::new(ROOT).join("models/assist-moe/bundle")
}

/// A device bundle with 25 % of the experts, made once per test process.
fn device_bundle() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        crate::harness::plan_device_bundle(&full_bundle(), 0.25, &dir, "dev25")
    })
    .clone()
}

/// A mixed-precision device bundle: 25 % of the experts at f32 plus a q4 copy of
/// all of them (`import --experts-dtype q4`, then `plan --lowp`).
fn mixed_bundle() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let q4 = dir.join("q4");
        let st = Command::new(BIN)
            .current_dir(ROOT)
            .args([
                "import",
                "--hf",
                "models/assist-moe/hf",
                "--experts-dtype",
                "q4",
                "--out",
            ])
            .arg(&q4)
            .stdout(Stdio::null())
            .status()
            .expect("run moe-edge import");
        assert!(st.success(), "moe-edge import --experts-dtype q4 failed");
        crate::harness::plan_device_bundle_with(
            &full_bundle(),
            0.25,
            &dir,
            "mixed25",
            &["--lowp".as_ref(), q4.as_os_str()],
        )
    })
    .clone()
}

fn broker() -> Broker {
    Broker::start(BrokerConfig::new("127.0.0.1:0".parse().unwrap())).expect("start rumqttd")
}

/// A `moe-edge host --broker` process; killed on drop.
struct Host {
    child: Child,
    /// Its stdout, line by line.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Host {
    fn spawn(url: &str, id: &str) -> Host {
        let mut child = Command::new(BIN)
            .current_dir(ROOT)
            .args(["host", "--bundle"])
            .arg(full_bundle())
            .args(["--broker", url, "--host-id", id, "--workers", "1"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn moe-edge host");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("expert server ready") {
                    let _ = tx.send(());
                }
                kept.lock().unwrap().push(line);
            }
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("host did not report ready");
        Host { child, lines }
    }

    /// SIGTERM, then the `key=value` fields of the line the host prints
    /// when its expert server stops.
    fn stop(mut self) -> HashMap<String, u64> {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let end = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "host did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader thread sees EOF right after the exit.
        std::thread::sleep(Duration::from_millis(100));
        let lines = self.lines.lock().unwrap();
        let last = lines
            .iter()
            .find(|l| l.contains("expert server stopped"))
            .unwrap_or_else(|| panic!("no stop line in {lines:?}"));
        last.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

fn board(timeout: Duration, on_miss: OnMiss) -> Board {
    let mut b = Board::load("host-cpu").unwrap();
    b.offload.enabled = true;
    b.offload.timeout = timeout;
    b.offload.on_miss = on_miss;
    b
}

/// The device: a pruned engine whose missing experts go to the broker's hosts.
struct Device {
    engine: Engine,
    remote: MqttRemote,
    _rt: tokio::runtime::Runtime,
}

fn device(url: &str, name: &str, board: &Board) -> Device {
    device_on(&device_bundle(), url, name, board)
}

fn device_on(bundle: &Path, url: &str, name: &str, board: &Board) -> Device {
    let mut engine = Engine::load(bundle, board, Verify::Sizes).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cfg = RemoteConfig::new(
        &engine.model.manifest,
        DeviceId::new(name).unwrap(),
        board.offload.timeout,
    )
    .unwrap();
    let mqtt = MqttConfig::from_url(url, name).unwrap();
    let remote = rt
        .block_on(MqttRemote::connect(mqtt, cfg, std::future::pending()))
        .unwrap();
    remote
        .probe(Duration::from_secs(30))
        .expect("a host answers");
    engine.model.set_remote(Some(Arc::new(remote.clone())));
    Device {
        engine,
        remote,
        _rt: rt,
    }
}

fn full_engine() -> Engine {
    Engine::load(
        &full_bundle(),
        &Board::load("host-cpu").unwrap(),
        Verify::Sizes,
    )
    .unwrap()
}

/// Greedy decode through `forward`: the tokens and every step's last logits.
fn greedy(
    engine: &Engine,
    ids: &[u32],
    n: usize,
    counts: &mut ExpertCounts,
) -> (Vec<u32>, Vec<Vec<f32>>) {
    let m = &engine.model;
    let mut kv = m.new_kv();
    let mut times = StepTimes::default();
    let mut tokens = Vec::new();
    let mut logits = Vec::new();
    let mut l = m
        .forward(&mut kv, ids, false, counts, &mut times, None)
        .unwrap()
        .into_f32()
        .unwrap();
    for _ in 0..n {
        let next = argmax(&l);
        tokens.push(next);
        logits.push(l);
        if engine.special.eos.contains(&next) {
            break;
        }
        l = m
            .forward(&mut kv, &[next], false, counts, &mut times, None)
            .unwrap()
            .into_f32()
            .unwrap();
    }
    (tokens, logits)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(
            0f32,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
}

/// Chat prompts of the demo test split: those with index `i % shards == shard`.
fn test_prompts(engine: &Engine, shard: usize, shards: usize) -> Vec<(usize, String)> {
    use moe_edge::openai::ChatRequest;
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("models/assist-moe/data/test.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .filter(|(i, _)| i % shards == shard)
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let req = ChatRequest::from_value(serde_json::json!({ "messages": v["messages"] }))
                .map_err(|e| e.message)
                .unwrap();
            let p = moe_edge::chat::template::render_chat(
                &req.text_messages(),
                engine.bundle.manifest.chat_template.as_deref(),
            )
            .unwrap();
            (i, p)
        })
        .collect()
}

/// A read ahead still on its way when its layer runs follows the board's
/// `on_late`. The I/O threads are held, as behind a disk too slow for the
/// model, so the predicted misses are late (until the bounded queue of
/// reads ahead is full). `wait` reads them then: the same logits as every
/// expert resident. `substitute` gives their weight to resident experts:
/// counted, and not exact.
#[test]
fn late_reads_ahead_follow_the_board_policy() {
    let full = full_engine();
    let expert_bytes = full.model.store().expert_bytes() as u64;
    let paged = |on_late| {
        let mut b = Board::load("host-cpu").unwrap();
        b.memory.experts_bytes = 16 * expert_bytes;
        b.prefetch.mode = Prefetch::Router;
        b.prefetch.on_late = on_late;
        let e = Engine::load(&full_bundle(), &b, Verify::Full).unwrap();
        assert!(e.model.hold_reads_ahead(true), "prediction is on");
        e
    };
    let (wait, subst) = (paged(OnLate::Wait), paged(OnLate::Substitute));
    let prompts = test_prompts(&full, 0, 100);
    let (mut cf, mut cw, mut cs) = Default::default();
    let mut same = 0;
    for (i, p) in &prompts {
        let ids = full.encode(p).unwrap();
        let (ta, la) = greedy(&full, &ids, 24, &mut cf);
        let (tw, lw) = greedy(&wait, &ids, 24, &mut cw);
        assert_eq!(ta, tw, "test prompt {i}: tokens differ with on_late = wait");
        assert_eq!(la, lw, "test prompt {i}: logits differ with on_late = wait");
        let (ts, _) = greedy(&subst, &ids, 24, &mut cs);
        assert!(!ts.is_empty());
        same += usize::from(ta == ts);
    }
    let cs: ExpertCounts = cs;
    let cw: ExpertCounts = cw;
    eprintln!(
        "on_late: wait {cw:?}; substitute {cs:?}; substitute's tokens equal in {same} of {} prompts",
        prompts.len()
    );
    assert!(cw.late > 0 && cw.substituted == 0, "{cw:?}");
    assert!(
        cs.late > 0 && cs.substituted > 0 && cs.substituted <= cs.late,
        "{cs:?}"
    );
    for e in [&wait, &subst] {
        let (used, budget) = e.model.resident_bytes();
        assert!(used <= budget, "{used} > {budget}");
        e.model.hold_reads_ahead(false);
    }
}

/// The test split is covered whole, in this many shards (one test each, so
/// nextest runs them side by side and none runs long).
const SHARDS: usize = 4;

/// A device holding 25 % of the experts plus a host process (escalate on
/// any failed remote call: never a silent substitution) against the full
/// model run locally: same greedy tokens, logits within 1e-4 at every step,
/// on the golden prompts (shard 0) and on test prompts `i % SHARDS == shard`.
///
/// Beside them, the full bundle paged under a budget of 16 experts (a
/// quarter) with the next layer's experts predicted and paged in ahead:
/// bit-identical logits. On odd shards the device also pages its own
/// experts (budget 8) with prediction, so host, paging and prediction run
/// together.
fn equivalence(shard: usize) {
    let b = broker();
    let host_id = format!("host-eq{shard}");
    let host = Host::spawn(&b.url(), &host_id);
    let mut dev_board = board(Duration::from_secs(5), OnMiss::Escalate);
    let expert_bytes = full_engine().model.store().expert_bytes() as u64;
    if shard % 2 == 1 {
        dev_board.memory.experts_bytes = 8 * expert_bytes;
        dev_board.prefetch.mode = Prefetch::Router;
    }
    let dev = device(&b.url(), &format!("dev-eq{shard}"), &dev_board);
    let full = full_engine();
    let mut paged_board = Board::load("host-cpu").unwrap();
    paged_board.memory.experts_bytes = 16 * expert_bytes;
    paged_board.prefetch.mode = Prefetch::Router;
    let paged = Engine::load(&full_bundle(), &paged_board, Verify::Full).unwrap();
    let present: usize = (0..4)
        .map(|l| dev.engine.model.store().present(l).len())
        .sum();
    assert_eq!(present, 16, "device bundle holds 25 % of 64 experts");

    let mut worst = 0f32;
    let mut n_golden = 0;
    if shard == 0 {
        let golden =
            read_golden(&Path::new(ROOT).join("models/assist-moe/golden.safetensors")).unwrap();
        for (i, g) in golden.iter().enumerate() {
            let a = run_prompt(&full.model, i, g, true).unwrap();
            let d = run_prompt(&dev.engine.model, i, g, true).unwrap();
            assert_eq!(
                a.tokens, d.tokens,
                "golden prompt {i}: greedy tokens differ"
            );
            let p = run_prompt(&paged.model, i, g, true).unwrap();
            assert_eq!(a.tokens, p.tokens, "golden prompt {i}: paged tokens differ");
            assert_eq!(a.logits, p.logits, "golden prompt {i}: paged logits differ");
            let diff = max_diff(a.logits.as_ref().unwrap(), d.logits.as_ref().unwrap());
            assert!(diff <= 1e-4, "golden prompt {i}: max |Δlogit| {diff}");
            worst = worst.max(diff);
        }
        n_golden = golden.len();
    }
    let prompts = test_prompts(&full, shard, SHARDS);
    let (mut cf, mut cd) = (ExpertCounts::default(), ExpertCounts::default());
    let mut cp = ExpertCounts::default();
    let mut tokens = 0;
    for (i, p) in &prompts {
        let ids = full.encode(p).unwrap();
        let (ta, la) = greedy(&full, &ids, 48, &mut cf);
        let (td, ld) = greedy(&dev.engine, &ids, 48, &mut cd);
        assert_eq!(ta, td, "test prompt {i}: greedy tokens differ");
        let (tp, lp) = greedy(&paged, &ids, 48, &mut cp);
        assert_eq!(ta, tp, "test prompt {i}: paged greedy tokens differ");
        assert_eq!(la, lp, "test prompt {i}: paged logits differ");
        for (x, y) in la.iter().zip(&ld) {
            let diff = max_diff(x, y);
            assert!(diff <= 1e-4, "test prompt {i}: max |Δlogit| {diff}");
            worst = worst.max(diff);
        }
        tokens += ta.len();
    }
    let s = dev.remote.stats();
    eprintln!(
        "equivalence shard {shard}/{SHARDS}: {n_golden} golden + {} test prompts, {tokens} generated tokens, max |Δlogit| {worst:e}; device counts {cd:?}; remote {s:?}",
        prompts.len()
    );
    assert_eq!(prompts.len(), 500, "the demo test split has 2000 prompts");
    // Paging happened, and the prediction brought experts in ahead.
    let (pred, pf) = paged.model.prefetch_stats().expect("prefetch is on");
    eprintln!(
        "paged: counts {cp:?}; prediction {:.1} %; prefetch {pf:?}; dev {:?}",
        pred.overall() * 100.0,
        dev.engine.model.prefetch_stats().map(|p| p.1)
    );
    assert!(cp.paged > 0 && cp.prefetched > 0, "{cp:?}");
    assert!(pred.overall() > 0.3, "{pred:?}");
    assert_eq!(cp.substituted + cp.remote, 0);
    if shard % 2 == 1 {
        assert!(cd.prefetched > 0, "{cd:?}");
    }
    assert_eq!(cd.substituted, 0);
    assert!(cd.remote > 0 && cd.resident + cd.paged > 0);
    assert_eq!(s.timeouts, 0);
    assert!(s.ok > 0);
    assert_eq!(s.hosts.get(&host_id).copied(), Some(s.ok), "{s:?}");
    // With prediction on, the device hints the host of the next layer's
    // experts it does not carry, and the host reads them in.
    let host_stats = host.stop();
    eprintln!("host at stop: {host_stats:?}");
    assert_eq!(
        host_stats.get("served").copied(),
        Some(s.ok),
        "{host_stats:?}"
    );
    if shard % 2 == 1 {
        assert!(s.hints > 0 && s.hints_dropped == 0, "{s:?}");
        let (got, read) = (host_stats["hints"], host_stats["hinted"]);
        assert!(
            got > 0 && got <= s.hints && read > 0,
            "{host_stats:?} {s:?}"
        );
        assert_eq!(host_stats["hints_dropped"], 0);
    } else {
        assert_eq!(s.hints, 0, "no prediction, no hints: {s:?}");
        assert_eq!(host_stats["hints"], 0);
    }
}

#[test]
fn equivalence_25_percent_plus_host_golden_and_split_0() {
    equivalence(0);
}

#[test]
fn equivalence_25_percent_plus_host_split_1() {
    equivalence(1);
}

#[test]
fn equivalence_25_percent_plus_host_split_2() {
    equivalence(2);
}

#[test]
fn equivalence_25_percent_plus_host_split_3() {
    equivalence(3);
}

/// Steps a generation to its end; returns (finished, wall time).
fn finish(
    engine: &Engine,
    g: &mut moe_edge::engine::Generation,
) -> (moe_edge::engine::Finished, Duration) {
    let t = Instant::now();
    loop {
        if let Step::Done(f) = engine.step(g).unwrap() {
            return (f, t.elapsed());
        }
    }
}

fn params() -> GenParams {
    GenParams {
        max_tokens: 48,
        ..GenParams::default()
    }
}

#[test]
fn host_killed_then_restarted() {
    let b = broker();
    let mut host = Host::spawn(&b.url(), "host-fault");
    let dev = device(
        &b.url(),
        "dev-fault",
        &board(Duration::from_millis(200), OnMiss::Substitute),
    );
    let e = &dev.engine;
    let prompts: Vec<String> = test_prompts(e, 0, 97).into_iter().map(|(_, p)| p).collect();

    // Mid-generation: a few steps with the host, then kill it.
    let mut g = e.begin(&prompts[0], params()).unwrap();
    for _ in 0..4 {
        if let Step::Done(_) = e.step(&mut g).unwrap() {
            break;
        }
    }
    let before = dev.remote.stats();
    assert!(before.ok > 0, "host served before the kill: {before:?}");
    host.kill();
    let (f, took) = finish(e, &mut g);
    let (f, took) = if f.experts.substituted == 0 {
        // Finished before the kill took effect: one more request, host gone.
        let mut g = e.begin(&prompts[1], params()).unwrap();
        finish(e, &mut g)
    } else {
        (f, took)
    };
    let after = dev.remote.stats();
    eprintln!(
        "host killed: finished in {took:?} counts {:?} remote {after:?}",
        f.experts
    );
    assert!(f.experts.substituted > 0, "degraded: {:?}", f.experts);
    // Deadline: 48 tokens x 4 layers would be 38 s of 200 ms timeouts without the breaker.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(after.timeouts + after.fast_fail > 0);

    // Restarted: the device uses it again.
    let _host = Host::spawn(&b.url(), "host-fault");
    dev.remote
        .probe(Duration::from_secs(30))
        .expect("restarted host answers");
    let mut g = e.begin(&prompts[2], params()).unwrap();
    let (f, _) = finish(e, &mut g);
    eprintln!("host restarted: counts {:?}", f.experts);
    assert!(f.experts.remote > 0, "remote again: {:?}", f.experts);
}

#[test]
fn two_hosts_split_the_load_and_survive_one_loss() {
    let b = broker();
    let mut h1 = Host::spawn(&b.url(), "host-a");
    let _h2 = Host::spawn(&b.url(), "host-b");
    let dev = device(
        &b.url(),
        "dev-two",
        &board(Duration::from_secs(2), OnMiss::Substitute),
    );
    let full = full_engine();
    let e = &dev.engine;
    let prompts: Vec<String> = test_prompts(e, 0, 101)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    for p in prompts.iter().take(3) {
        let mut g = e.begin(p, params()).unwrap();
        let (f, _) = finish(e, &mut g);
        assert_eq!(f.experts.substituted, 0);
    }
    let s = dev.remote.stats();
    eprintln!("two hosts: {:?}", s.hosts);
    assert!(
        s.hosts.get("host-a").copied().unwrap_or(0) > 0,
        "{:?}",
        s.hosts
    );
    assert!(
        s.hosts.get("host-b").copied().unwrap_or(0) > 0,
        "{:?}",
        s.hosts
    );

    // Lose one mid-generation: the request still completes, the other host takes over.
    let mut g = e.begin(&prompts[3], params()).unwrap();
    for _ in 0..3 {
        e.step(&mut g).unwrap();
    }
    h1.kill();
    let (f, _) = finish(e, &mut g);
    let mid = dev.remote.stats();
    eprintln!(
        "one host lost mid-generation: counts {:?} remote {mid:?}",
        f.experts
    );
    // Every later request is answered in full by the survivor, same tokens as the full model.
    let b_before = mid.hosts.get("host-b").copied().unwrap_or(0);
    for p in prompts.iter().skip(4).take(2) {
        let mut g = e.begin(p, params()).unwrap();
        let (f, _) = finish(e, &mut g);
        let mut gf = full.begin(p, params()).unwrap();
        let (ff, _) = finish(&full, &mut gf);
        assert_eq!(f.experts.substituted, 0, "{:?}", f.experts);
        assert_eq!(f.text, ff.text);
    }
    let end = dev.remote.stats();
    assert!(end.hosts.get("host-b").copied().unwrap_or(0) > b_before);
    assert_eq!(
        end.timeouts, mid.timeouts,
        "no call lost after the broker saw the loss"
    );
}

/// Mixed-precision residency with a host: misses whose router weight reaches
/// `offload.full_precision_above` go to the host (full precision), the others
/// run the local q4 copy; at threshold 0 every miss goes to the host and the
/// device gives the full model's greedy tokens exactly.
#[test]
fn mixed_precision_asks_the_host_when_the_weight_is_high() {
    let b = broker();
    let url = b.url();
    let _host = Host::spawn(&url, "h-mixed");
    let full = full_engine();
    let prompts = test_prompts(&full, 0, 97);
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .take(4)
        .map(|(_, p)| full.encode(p).unwrap())
        .collect();

    // threshold 0.5: both paths used
    let mut bd = board(Duration::from_secs(5), OnMiss::Substitute);
    bd.offload.full_precision_above = Some(0.5);
    let dev = device_on(&mixed_bundle(), &url, "dev-mixed-05", &bd);
    let mut c = ExpertCounts::default();
    for p in &ids {
        greedy(&dev.engine, p, 8, &mut c);
    }
    eprintln!("threshold 0.5: {c:?}");
    assert!(c.remote > 0 && c.low_precision > 0, "{c:?}");
    assert_eq!(c.substituted, 0, "{c:?}");
    drop(dev);

    // threshold 0: every miss at full precision on the host = the full model
    bd.offload.full_precision_above = Some(0.0);
    let dev = device_on(&mixed_bundle(), &url, "dev-mixed-0", &bd);
    let mut c = ExpertCounts::default();
    let mut cf = ExpertCounts::default();
    for p in &ids {
        let (got, gl) = greedy(&dev.engine, p, 8, &mut c);
        let (want, wl) = greedy(&full, p, 8, &mut cf);
        assert_eq!(got, want);
        for (a, b) in gl.iter().zip(&wl) {
            assert!(max_diff(a, b) < 1e-3);
        }
    }
    assert!(
        c.remote > 0 && c.low_precision == 0 && c.substituted == 0,
        "{c:?}"
    );
}

/// One host serving eight devices at once (an expert server with one
/// compute thread, each device its own MQTT client on its own thread):
/// requests that arrive together are served in shared passes over the
/// experts (the host's counter says so), and every device gets the answer
/// to its own request (the weighted sum computed here from the same bundle).
#[test]
fn one_host_batches_requests_from_many_devices() {
    use moe_edge::experts::dispatch::RemoteExperts;
    use moe_edge::experts::kernels::expert_ffn;
    use moe_edge::host::experts::{ExpertServer, ExpertServerConfig};
    let b = broker();
    let url = b.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cfg = ExpertServerConfig::new(
        full_bundle(),
        MqttConfig::from_url(&url, "fleet-host").unwrap(),
    );
    cfg.workers = 1;
    cfg.max_batch = 16;
    cfg.verify = Verify::Sizes;
    let server = ExpertServer::open(cfg).unwrap();
    let stats = server.stats();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
    rt.spawn(async move {
        let _ = server
            .run(
                async move {
                    let _ = stop_rx.await;
                },
                move |_| {
                    let _ = ready_tx.send(());
                },
            )
            .await;
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let full = full_engine();
    let a = full.model.manifest.architecture.clone();
    let h = a.hidden_size;
    let devices: Vec<MqttRemote> = (0..8)
        .map(|d| {
            let name = format!("fleet-dev-{d}");
            let cfg = RemoteConfig::new(
                &full.model.manifest,
                DeviceId::new(&name).unwrap(),
                Duration::from_secs(10),
            )
            .unwrap();
            let r = rt
                .block_on(MqttRemote::connect(
                    MqttConfig::from_url(&url, &name).unwrap(),
                    cfg,
                    std::future::pending(),
                ))
                .unwrap();
            r.probe(Duration::from_secs(30)).unwrap();
            r
        })
        .collect();
    let full = Arc::new(full);
    let threads: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(d, r)| {
            let (r, full) = (r.clone(), full.clone());
            std::thread::spawn(move || {
                let store = full.model.store();
                let mut act = vec![0f32; a.expert_intermediate_size];
                for i in 0..40usize {
                    let l = i % a.num_layers;
                    let states: Vec<f32> = (0..h)
                        .map(|j| (((j + 13 * d + 7 * i) % 61) as f32 / 61.0) - 0.5)
                        .collect();
                    let e1 = ((d + i) % a.num_experts) as u16;
                    let e2 = ((d + i + 5) % a.num_experts) as u16;
                    let pairs = vec![vec![(e1, 0.7f32), (e2, 0.3f32)]];
                    let got = r.submit(l, &pairs, &states, h).unwrap()().unwrap();
                    let mut want = vec![0f32; h];
                    for &(e, w) in &pairs[0] {
                        let wts = store.get(l, e as usize).unwrap();
                        expert_ffn(wts, h, &states, w, &mut act, &mut want);
                    }
                    let diff = got
                        .iter()
                        .zip(&want)
                        .map(|(x, y)| (x - y).abs())
                        .fold(0f32, f32::max);
                    assert!(diff <= 1e-5, "device {d} call {i}: max |Δ| {diff}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a device got a wrong answer");
    }
    let s = stats.snapshot();
    eprintln!("fleet host: {s:?}");
    assert!(s.served >= 8 * 40, "{s:?}");
    assert!(s.batches > 0 && s.batched >= 2 * s.batches, "{s:?}");
    let _ = stop_tx.send(());
}
