//! `moe-edge import`: tiny checkpoints built here and the transformers
//! fixtures in `tests/fixtures/` are imported, every graph is loaded through
//! `runtime::backend`, and a straightforward reference runner (graphs through
//! the runtime trait, a naive loop over experts read from
//! `experts.safetensors`) reproduces the golden vectors, both as one prefill
//! and token by token through the KV cache. Bad inputs fail with messages
//! that name the file and the field or tensor, and leave no bundle behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use moe_edge::bundle::import::{import, parse_dtype, ImportOptions};
use moe_edge::bundle::manifest::expert_tensor_name;
use moe_edge::bundle::{Bundle, Dtype, Manifest, Verify};
use moe_edge::runtime::{self, BackendOptions, Graph, Tensor, TensorView};
use safetensors::SafeTensors;
use serde_json::{json, Value};

// ---------------------------------------------------------------- tiny checkpoints

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.next()).collect()
    }
}

const TINY_V: usize = 64;
const TINY_H: usize = 32;
const TINY_L: usize = 2;
const TINY_E: usize = 4;
const TINY_I: usize = 16;

fn tiny_config(arch: &str) -> Value {
    let mut c = json!({
        "architectures": [arch],
        "vocab_size": TINY_V,
        "hidden_size": TINY_H,
        "num_hidden_layers": TINY_L,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_experts_per_tok": 2,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": false,
        "eos_token_id": 62,
        "torch_dtype": "float32",
        "some_unknown_field": {"nested": true},
    });
    let o = c.as_object_mut().unwrap();
    match arch {
        "Qwen3MoeForCausalLM" => {
            o.insert("head_dim".into(), json!(16));
            o.insert("num_experts".into(), json!(TINY_E));
            o.insert("moe_intermediate_size".into(), json!(TINY_I));
            o.insert("intermediate_size".into(), json!(64));
            o.insert("norm_topk_prob".into(), json!(true));
            o.insert("decoder_sparse_step".into(), json!(1));
            o.insert("mlp_only_layers".into(), json!([]));
            o.insert("use_sliding_window".into(), json!(false));
            o.insert("sliding_window".into(), json!(null));
            o.insert("rope_scaling".into(), json!(null));
        }
        "Qwen2MoeForCausalLM" => {
            o.insert("num_experts".into(), json!(TINY_E));
            o.insert("moe_intermediate_size".into(), json!(TINY_I));
            o.insert("shared_expert_intermediate_size".into(), json!(24));
            o.insert("norm_topk_prob".into(), json!(false));
            o.insert("tie_word_embeddings".into(), json!(true));
        }
        "MixtralForCausalLM" => {
            o.insert("num_local_experts".into(), json!(TINY_E));
            o.insert("intermediate_size".into(), json!(TINY_I));
            o.insert("sliding_window".into(), json!(null));
        }
        "OlmoeForCausalLM" => {
            o.insert("num_experts".into(), json!(TINY_E));
            o.insert("intermediate_size".into(), json!(TINY_I));
            o.insert("clip_qkv".into(), json!(null));
        }
        _ => {}
    }
    c
}

/// Write a tiny random checkpoint of `arch` into `dir`.
fn tiny_checkpoint(dir: &Path, arch: &str, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = tiny_config(arch);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    let a = moe_edge::bundle::import::hf::validate(
        &serde_json::from_value(cfg.clone()).unwrap(),
        Path::new("config.json"),
    )
    .unwrap();
    let mut rng = Rng(seed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    use moe_edge::bundle::import::graphs::{dense_tensors, expert_tensors};
    for (name, shape) in dense_tensors(&a).into_iter().chain(expert_tensors(&a)) {
        let n: usize = shape.iter().product();
        let data = if name.ends_with("norm.weight") {
            rng.vec(n, 0.2, 1.0)
        } else if name.contains("embed_tokens") {
            rng.vec(n, 1.0, 0.0)
        } else {
            rng.vec(n, 0.3, 0.0)
        };
        tensors.push((name, shape, data));
    }
    write_safetensors(
        &dir.join("model.safetensors"),
        &tensors,
        safetensors::Dtype::BF16,
    );
    let tok = json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 60, "content": "<|endoftext|>", "special": true},
            {"id": 61, "content": "<|im_start|>", "special": true},
            {"id": 62, "content": "<|im_end|>", "special": true},
            {"id": 63, "content": "<tool_call>", "special": false},
        ],
        "model": {"type": "BPE", "vocab": {"a": 0, "</tool_call>": 59}, "merges": []},
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    let tc = json!({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": null});
    std::fs::write(dir.join("tokenizer_config.json"), tc.to_string()).unwrap();
}

fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: safetensors::Dtype,
) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| match dtype {
            safetensors::Dtype::BF16 => d
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
            safetensors::Dtype::F16 => d
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            _ => d.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

const ARCHS: [&str; 4] = [
    "Qwen3MoeForCausalLM",
    "Qwen2MoeForCausalLM",
    "MixtralForCausalLM",
    "OlmoeForCausalLM",
];

// ---------------------------------------------------------------- reference runner

fn matvec_rows(w: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    (0..rows)
        .map(|r| {
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

struct Runner {
    manifest: Manifest,
    embed: Box<dyn Graph>,
    layers: Vec<Box<dyn Graph>>,
    head: Box<dyn Graph>,
    experts: Vec<u8>,
}

#[derive(Default, Clone)]
struct Kv {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

struct StepOut {
    /// [L+1] of [T*H]
    hidden: Vec<Vec<f32>>,
    /// [T*V]
    logits: Vec<f32>,
    /// [L][T] of top-k (id, weight)
    routes: Vec<Vec<Vec<(usize, f32)>>>,
    /// [L][T]: router probability of the k-th expert minus the (k+1)-th's
    /// (how far the top-k choice is from a tie)
    margins: Vec<Vec<f32>>,
}

fn run(g: &dyn Graph, inputs: &[(&str, TensorView<'_>)]) -> HashMap<String, Tensor> {
    let by_name: HashMap<&str, &TensorView> = inputs.iter().map(|(n, v)| (*n, v)).collect();
    let ordered: Vec<TensorView> = g
        .input_names()
        .iter()
        .map(|n| {
            (*by_name
                .get(n.as_str())
                .unwrap_or_else(|| panic!("graph input {n} not provided")))
            .clone()
        })
        .collect();
    let outs = g.run(&ordered).unwrap();
    g.output_names().iter().cloned().zip(outs).collect()
}

impl Runner {
    fn open(dir: &Path) -> Runner {
        let bundle = Bundle::open(dir, Verify::Full).unwrap();
        let backend = runtime::backend(&BackendOptions::default()).unwrap();
        let m = bundle.manifest.clone();
        let embed = backend.load(&bundle.path(&m.graphs.embed)).unwrap();
        let layers = m
            .graphs
            .layers
            .iter()
            .map(|p| backend.load(&bundle.path(p)).unwrap())
            .collect();
        let head = backend.load(&bundle.path(&m.graphs.head)).unwrap();
        let experts = std::fs::read(bundle.path(&m.experts.file)).unwrap();
        Runner {
            manifest: m,
            embed,
            layers,
            head,
            experts,
        }
    }

    fn new_kv(&self) -> Kv {
        let l = self.manifest.architecture.num_layers;
        Kv {
            k: vec![vec![]; l],
            v: vec![vec![]; l],
            len: 0,
        }
    }

    fn expert(&self, l: usize, e: usize) -> Vec<f32> {
        let st = SafeTensors::deserialize(&self.experts).unwrap();
        let t = st.tensor(&expert_tensor_name(l, e)).unwrap();
        let off = t.data().as_ptr() as usize - self.experts.as_ptr() as usize;
        assert_eq!(off % 4096, 0);
        let dt = self.manifest.experts.dtype;
        let h = self.manifest.architecture.hidden_size;
        let mut out = Vec::new();
        for row in t.data().chunks_exact(dt.row_bytes(h)) {
            moe_edge::bundle::quant::decode_row(row, h, dt, &mut out);
        }
        out
    }

    fn rope(&self, pos0: usize, t: usize) -> (Vec<f32>, Vec<f32>) {
        let a = &self.manifest.architecture;
        let d = a.head_dim;
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / (a.rope_theta as f32).powf((2 * i) as f32 / d as f32))
            .collect();
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for p in pos0..pos0 + t {
            for j in 0..d {
                let f = p as f32 * inv[j % (d / 2)];
                cos.push(f.cos());
                sin.push(f.sin());
            }
        }
        (cos, sin)
    }

    fn step(&self, ids: &[i64], kv: &mut Kv) -> StepOut {
        let a = self.manifest.architecture.clone();
        let (t, h, p) = (ids.len(), a.hidden_size, kv.len);
        let (kvh, d, i_sz) = (a.num_kv_heads, a.head_dim, a.expert_intermediate_size);
        let ids_v = TensorView::i64(vec![t], ids);
        let mut hidden = run(self.embed.as_ref(), &[("input_ids", ids_v)])
            .remove("hidden")
            .unwrap();
        assert_eq!(hidden.shape, vec![t, h]);
        let mut hiddens = vec![hidden.as_f32().unwrap().to_vec()];
        let (cos, sin) = self.rope(p, t);
        let mut mask = vec![0f32; t * (p + t)];
        for r in 0..t {
            for c in 0..p + t {
                if c > p + r {
                    mask[r * (p + t) + c] = f32::NEG_INFINITY;
                }
            }
        }
        let mut routes = Vec::new();
        let mut margins = Vec::new();
        for (l, g) in self.layers.iter().enumerate() {
            let mut out = run(
                g.as_ref(),
                &[
                    ("hidden", hidden.view()),
                    ("cos", TensorView::f32(vec![t, d], &cos)),
                    ("sin", TensorView::f32(vec![t, d], &sin)),
                    ("mask", TensorView::f32(vec![t, p + t], &mask)),
                    ("past_k", TensorView::f32(vec![p, kvh, d], &kv.k[l])),
                    ("past_v", TensorView::f32(vec![p, kvh, d], &kv.v[l])),
                ],
            );
            let k = out.remove("k").unwrap();
            let v = out.remove("v").unwrap();
            assert_eq!(k.shape, vec![t, kvh, d]);
            kv.k[l].extend_from_slice(k.as_f32().unwrap());
            kv.v[l].extend_from_slice(v.as_f32().unwrap());
            let resid = out.remove("resid").unwrap().into_f32().unwrap();
            let moe_in = out.remove("moe_in").unwrap().into_f32().unwrap();
            let logits = out.remove("router_logits").unwrap();
            assert_eq!(logits.shape, vec![t, a.num_experts]);
            let logits = logits.into_f32().unwrap();
            let shared = out.remove("shared_out").map(|s| s.into_f32().unwrap());
            assert_eq!(
                shared.is_some(),
                a.shared_expert_intermediate_size.is_some()
            );
            let mut next = resid.clone();
            let mut layer_routes = Vec::new();
            let mut layer_margins = Vec::new();
            for tok in 0..t {
                let lg = &logits[tok * a.num_experts..(tok + 1) * a.num_experts];
                let mx = lg.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let ex: Vec<f32> = lg.iter().map(|x| (x - mx).exp()).collect();
                let s: f32 = ex.iter().sum();
                let mut probs: Vec<(usize, f32)> = ex.iter().map(|x| x / s).enumerate().collect();
                probs.sort_by(|x, y| y.1.partial_cmp(&x.1).unwrap().then(x.0.cmp(&y.0)));
                layer_margins
                    .push(probs[a.top_k - 1].1 - probs.get(a.top_k).map(|p| p.1).unwrap_or(0.0));
                probs.truncate(a.top_k);
                if a.norm_topk_prob {
                    let s: f32 = probs.iter().map(|x| x.1).sum();
                    probs.iter_mut().for_each(|x| x.1 /= s);
                }
                let x = &moe_in[tok * h..(tok + 1) * h];
                for &(e, w) in &probs {
                    let ew = self.expert(l, e);
                    let (gw, rest) = ew.split_at(i_sz * h);
                    let (uw, dwt) = rest.split_at(i_sz * h);
                    let gv = matvec_rows(gw, i_sz, h, x);
                    let uv = matvec_rows(uw, i_sz, h, x);
                    let act: Vec<f32> = gv
                        .iter()
                        .zip(&uv)
                        .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                        .collect();
                    let mut y = vec![0f32; h];
                    for (ii, av) in act.iter().enumerate() {
                        for (hh, yv) in y.iter_mut().enumerate() {
                            *yv += av * dwt[ii * h + hh];
                        }
                    }
                    for hh in 0..h {
                        next[tok * h + hh] += w * y[hh];
                    }
                }
                if let Some(s) = &shared {
                    for hh in 0..h {
                        next[tok * h + hh] += s[tok * h + hh];
                    }
                }
                layer_routes.push(probs);
            }
            routes.push(layer_routes);
            margins.push(layer_margins);
            hiddens.push(next.clone());
            hidden = Tensor::f32(vec![t, h], next);
        }
        kv.len += t;
        let logits = run(self.head.as_ref(), &[("hidden", hidden.view())])
            .remove("logits")
            .unwrap();
        assert_eq!(logits.shape, vec![t, a.vocab_size]);
        StepOut {
            hidden: hiddens,
            logits: logits.into_f32().unwrap(),
            routes,
            margins,
        }
    }

    /// Token by token through the KV cache: the same shape of result as one prefill.
    fn decode_each(&self, ids: &[i64], kv: &mut Kv) -> StepOut {
        let mut all: Option<StepOut> = None;
        for &id in ids {
            let s = self.step(&[id], kv);
            match &mut all {
                None => all = Some(s),
                Some(a) => {
                    for (x, y) in a.hidden.iter_mut().zip(s.hidden) {
                        x.extend(y);
                    }
                    a.logits.extend(s.logits);
                    for (x, y) in a.routes.iter_mut().zip(s.routes) {
                        x.extend(y);
                    }
                    for (x, y) in a.margins.iter_mut().zip(s.margins) {
                        x.extend(y);
                    }
                }
            }
        }
        all.unwrap()
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn import_to(hf: &Path, out: &Path, dtype: Dtype) -> moe_edge::bundle::import::ImportReport {
    let mut o = ImportOptions::new(hf, out);
    o.dtype = dtype;
    o.force = true;
    import(&o).unwrap_or_else(|e| panic!("import {}: {e}", hf.display()))
}

// ---------------------------------------------------------------- tiny: graphs run, KV path

#[test]
fn tiny_every_arch_imports_loads_and_kv_matches_prefill() {
    for (n, arch) in ARCHS.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let hf = tmp.path().join("hf");
        tiny_checkpoint(&hf, arch, 7 + n as u64);
        for dtype in [Dtype::F32, Dtype::F16] {
            let out = tmp.path().join(format!("bundle-{dtype:?}"));
            let rep = import_to(&hf, &out, dtype);
            assert_eq!(rep.layers, TINY_L);
            assert_eq!(rep.manifest.architecture.hf_architecture, *arch);
            let r = Runner::open(&out);
            let ids: Vec<i64> = vec![3, 17, 42, 5, 60];
            let mut kv = r.new_kv();
            let pre = r.step(&ids, &mut kv);
            let mut kv2 = r.new_kv();
            let dec = r.decode_each(&ids, &mut kv2);
            for l in 0..=TINY_L {
                let dd = max_diff(&pre.hidden[l], &dec.hidden[l]);
                assert!(
                    dd < 1e-4,
                    "{arch} {dtype:?} hidden {l}: prefill vs decode differ by {dd}"
                );
            }
            let dd = max_diff(&pre.logits, &dec.logits);
            assert!(
                dd < 1e-4,
                "{arch} {dtype:?} logits: prefill vs decode differ by {dd}"
            );
            // mixed: prefill 3 then decode 2 (P>0, T>1)
            let mut kv3 = r.new_kv();
            r.step(&ids[..3], &mut kv3);
            let tail = r.step(&ids[3..], &mut kv3);
            let dd = max_diff(&tail.logits, &pre.logits[3 * TINY_V..]);
            assert!(
                dd < 1e-4,
                "{arch} {dtype:?} chunked prefill differs by {dd}"
            );
            assert!(pre.logits.iter().all(|x| x.is_finite()));
        }
    }
}

#[test]
fn tiny_manifest_special_tokens_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("m").join("hf");
    tiny_checkpoint(&hf, "Qwen3MoeForCausalLM", 1);
    let out = tmp.path().join("out");
    let rep = import_to(&hf, &out, Dtype::F16);
    let m = &rep.manifest;
    assert_eq!(m.model_id, "m");
    assert_eq!(m.special_tokens.eos, vec![62]);
    assert_eq!(m.special_tokens.im_start, Some(61));
    assert_eq!(m.special_tokens.im_end, Some(62));
    assert_eq!(m.special_tokens.tool_call_start, Some(63));
    assert_eq!(m.special_tokens.tool_call_end, Some(59));
    assert_eq!(m.special_tokens.pad, Some(60));
    assert_eq!(m.special_tokens.fallback, None);
    assert!(m.chat_template.as_deref().unwrap().contains("messages"));
    assert_eq!(m.experts.expert_bytes, 3 * TINY_I * TINY_H * 2);
    // embed, head, TINY_L layers, experts, dense weights, tokenizer
    assert_eq!(m.files.len(), TINY_L + 5);
    let b = Bundle::open(&out, Verify::Full).unwrap();
    assert_eq!(&b.manifest, m);
    // experts: every expert page-aligned, the safetensors crate loads the file
    let bytes = std::fs::read(out.join("experts.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for l in 0..TINY_L {
        for e in 0..TINY_E {
            let t = st.tensor(&expert_tensor_name(l, e)).unwrap();
            assert_eq!(t.shape(), &[3, TINY_I, TINY_H]);
            assert_eq!(
                (t.data().as_ptr() as usize - bytes.as_ptr() as usize) % 4096,
                0
            );
        }
    }
    // no temp dirs left next to the bundle
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn sharded_checkpoint_imports_like_single_file() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    tiny_checkpoint(&hf, "MixtralForCausalLM", 3);
    let one = tmp.path().join("one");
    import_to(&hf, &one, Dtype::F32);
    // split model.safetensors into two shards + index
    let bytes = std::fs::read(hf.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut map = serde_json::Map::new();
    for (si, chunk) in names.chunks(names.len() / 2 + 1).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", si + 1);
        let ts: Vec<(String, Vec<usize>, Vec<f32>)> = chunk
            .iter()
            .map(|n| {
                let t = st.tensor(n).unwrap();
                let d = t
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect();
                map.insert(n.clone(), json!(file));
                (n.clone(), t.shape().to_vec(), d)
            })
            .collect();
        write_safetensors(&hf.join(&file), &ts, safetensors::Dtype::F32);
    }
    std::fs::remove_file(hf.join("model.safetensors")).unwrap();
    std::fs::write(
        hf.join("model.safetensors.index.json"),
        json!({"metadata": {"total_size": 0}, "weight_map": map}).to_string(),
    )
    .unwrap();
    let two = tmp.path().join("two");
    import_to(&hf, &two, Dtype::F32);
    for f in [
        "experts.safetensors",
        "graphs/layer.1.onnx",
        "graphs/head.onnx",
    ] {
        assert_eq!(
            std::fs::read(one.join(f)).unwrap(),
            std::fs::read(two.join(f)).unwrap(),
            "{f}"
        );
    }
}

// ---------------------------------------------------------------- golden fixtures

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

use crate::harness::golden::{read_golden, GoldenPrompt};

struct Golden {
    prompts: Vec<GoldenPrompt>,
}

fn load_golden(path: &Path) -> Golden {
    Golden {
        prompts: read_golden(path),
    }
}

/// Compare one run (prefill or decode) against the golden vectors of a prompt.
fn check_against(what: &str, r: &Runner, out: &StepOut, g: &GoldenPrompt, f32_exact: bool) {
    let a = &r.manifest.architecture;
    let (t, h, v, k) = (g.ids.len(), a.hidden_size, a.vocab_size, a.top_k);
    if f32_exact {
        for l in 0..=a.num_layers {
            let want = &g.hidden[l * t * h..(l + 1) * t * h];
            // relative where the residual stream is large (a trained model's first token
            // reaches a few hundred, where one f32 ulp is ~3e-5): 4e-6 of the largest value
            let bound = 1e-4f32.max(4e-6 * want.iter().fold(0f32, |m, x| m.max(x.abs())));
            let dd = max_diff(&out.hidden[l], want);
            assert!(
                dd < bound,
                "{what}: hidden[{l}] differs by {dd} (bound {bound})"
            );
        }
        let dd = max_diff(&out.logits, &g.logits);
        assert!(dd < 1e-4, "{what}: logits differ by {dd}");
    }
    for tok in 0..t {
        let (o, w) = (
            &out.logits[tok * v..(tok + 1) * v],
            &g.logits[tok * v..(tok + 1) * v],
        );
        let (got, want) = (argmax(o), argmax(w));
        if !f32_exact && got != want {
            // f16 weights move a trained model's logits by a few tenths where the
            // residual stream is large, and more where a router near-tie flips an
            // expert (allowed below): a flip is allowed only between two logits
            // closer in the reference than this position's own f16 error, and only
            // to the reference's runner-up.
            let err = max_diff(o, w);
            let margin = w[want] - w[got];
            let runner_up = w
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != want)
                .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                .0;
            assert!(
                got == runner_up && margin < 2.0 * err && err < 1.0,
                "{what}: argmax at position {tok}: {got} instead of {want} (reference margin {margin}, f16 error {err})"
            );
            eprintln!("{what}: position {tok}: near-tie flipped {want} -> {got} (reference margin {margin}, f16 error {err})");
        }
    }
    for l in 0..a.num_layers {
        for tok in 0..t {
            let base = (l * t + tok) * k;
            let want: Vec<usize> = g.router_ids[base..base + k]
                .iter()
                .map(|&x| x as usize)
                .collect();
            let got: Vec<usize> = out.routes[l][tok].iter().map(|x| x.0).collect();
            let mut ws = want.clone();
            let mut gs = got.clone();
            ws.sort();
            gs.sort();
            // f16 weights move router probabilities by ~1e-3: a near-tie
            // between the k-th and (k+1)-th expert may flip, anything else may not.
            if !f32_exact && gs != ws && out.margins[l][tok] < 5e-3 {
                eprintln!("{what}: layer {l} position {tok}: near-tie (margin {}) flipped {ws:?} -> {gs:?}", out.margins[l][tok]);
                continue;
            }
            assert_eq!(gs, ws, "{what}: router top-k ids, layer {l} position {tok}");
            if f32_exact {
                for (j, (_, w)) in out.routes[l][tok].iter().enumerate() {
                    let dw = (w - g.router_weights[base + j]).abs();
                    assert!(
                        dw < 1e-4,
                        "{what}: router weight layer {l} position {tok} slot {j} differs by {dw}"
                    );
                }
            }
        }
    }
}

fn golden_fixture(name: &str) {
    let hf = fixture_dir(name);
    assert!(
        hf.join("config.json").exists(),
        "fixture {} is missing (tests/fixtures/{name} is generated by the fixtures script)",
        hf.display()
    );
    golden_check(name, &hf, &hf.join("golden.safetensors"));
}

fn golden_check(name: &str, hf: &Path, golden: &Path) {
    let golden = load_golden(golden);
    let tmp = tempfile::tempdir().unwrap();
    for dtype in [Dtype::F32, Dtype::F16] {
        let out = tmp.path().join(format!("{name}-{dtype:?}"));
        import_to(hf, &out, dtype);
        let r = Runner::open(&out);
        let exact = dtype == Dtype::F32;
        for (pi, g) in golden.prompts.iter().enumerate() {
            let mut kv = r.new_kv();
            let pre = r.step(&g.ids, &mut kv);
            check_against(
                &format!("{name} {dtype:?} p{pi} prefill"),
                &r,
                &pre,
                g,
                exact,
            );
            let mut kv2 = r.new_kv();
            let dec = r.decode_each(&g.ids, &mut kv2);
            check_against(
                &format!("{name} {dtype:?} p{pi} decode"),
                &r,
                &dec,
                g,
                exact,
            );
            if exact && !g.greedy.is_empty() {
                // greedy continuation through the KV cache
                let v = r.manifest.architecture.vocab_size;
                let t = g.ids.len();
                let mut next = argmax(&pre.logits[(t - 1) * v..]) as i64;
                let mut got = vec![];
                for _ in 0..g.greedy.len() {
                    got.push(next);
                    let s = r.step(&[next], &mut kv);
                    next = argmax(&s.logits) as i64;
                }
                let want = &g.greedy;
                assert_eq!(&got, want, "{name} p{pi}: greedy continuation");
            }
        }
    }
}

#[test]
fn golden_qwen3_moe() {
    golden_fixture("qwen3_moe");
}
#[test]
fn golden_qwen2_moe() {
    golden_fixture("qwen2_moe");
}
#[test]
fn golden_mixtral() {
    golden_fixture("mixtral");
}
#[test]
fn golden_olmoe() {
    golden_fixture("olmoe");
}

/// The demo checkpoint, imported afresh, against its transformers golden vectors.
#[test]
fn golden_demo_assist_moe() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/assist-moe");
    let (hf, golden) = (demo.join("hf"), demo.join("golden.safetensors"));
    if !hf.join("config.json").exists() || !golden.exists() {
        eprintln!(
            "SKIPPED golden_demo_assist_moe: {} or {} missing",
            hf.display(),
            golden.display()
        );
        return;
    }
    golden_check("assist-moe", &hf, &golden);
}

// ---------------------------------------------------------------- bad input

/// A tiny Qwen3-MoE checkpoint in a temp dir, mutated by `edit`, then imported:
/// returns the error message and checks that no bundle (nor temp dir) was left.
fn failing_import(edit: impl FnOnce(&Path)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    tiny_checkpoint(&hf, "Qwen3MoeForCausalLM", 11);
    edit(&hf);
    let out = tmp.path().join("bundle");
    let err = import(&ImportOptions::new(&hf, &out))
        .expect_err("import must fail")
        .to_string();
    assert!(!out.exists(), "a failed import left {}", out.display());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("hf")],
        "left behind: {left:?}"
    );
    err
}

fn edit_config(hf: &Path, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let p = hf.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(&p, v.to_string()).unwrap();
}

fn assert_names(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "error `{err}` does not mention `{p}`");
    }
}

#[test]
fn missing_files_are_named() {
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        let err = failing_import(|hf| std::fs::remove_file(hf.join(f)).unwrap());
        assert_names(&err, &[f, "missing"]);
    }
    let tmp = tempfile::tempdir().unwrap();
    let err = import(&ImportOptions::new(
        tmp.path().join("nope"),
        tmp.path().join("out"),
    ))
    .unwrap_err()
    .to_string();
    assert_names(&err, &["nope", "missing"]);
}

#[test]
fn missing_config_field_is_named() {
    let err = failing_import(|hf| edit_config(hf, |c| drop(c.remove("num_experts"))));
    assert_names(&err, &["config.json", "field `num_experts` missing"]);
    let err = failing_import(|hf| edit_config(hf, |c| drop(c.remove("hidden_size"))));
    assert_names(&err, &["config.json", "field `hidden_size` missing"]);
}

#[test]
fn wrong_config_fields_are_named() {
    let cases: Vec<(&str, Value)> = vec![
        ("num_experts", json!("eight")),
        ("num_experts_per_tok", json!(9)),
        ("num_key_value_heads", json!(3)),
        ("rope_scaling", json!({"rope_type": "yarn", "factor": 4.0})),
        ("mlp_only_layers", json!([0])),
        ("decoder_sparse_step", json!(2)),
        ("hidden_act", json!("gelu")),
        ("norm_topk_prob", json!("yes")),
    ];
    for (field, value) in cases {
        let err =
            failing_import(|hf| edit_config(hf, |c| drop(c.insert(field.into(), value.clone()))));
        assert_names(&err, &["config.json", &format!("field `{field}`")]);
    }
    let err = failing_import(|hf| {
        edit_config(hf, |c| {
            c.insert("use_sliding_window".into(), json!(true));
            c.insert("sliding_window".into(), json!(32));
        })
    });
    assert_names(&err, &["config.json", "field `sliding_window`"]);
    let err = failing_import(|hf| std::fs::write(hf.join("config.json"), "{not json").unwrap());
    assert_names(&err, &["config.json", "invalid JSON"]);
}

#[test]
fn unknown_architecture_is_named_with_the_supported_list() {
    let err = failing_import(|hf| {
        edit_config(hf, |c| {
            drop(c.insert("architectures".into(), json!(["LlamaForCausalLM"])))
        })
    });
    assert_names(
        &err,
        &[
            "config.json",
            "field `architectures`",
            "LlamaForCausalLM",
            "Qwen3MoeForCausalLM",
            "Qwen2MoeForCausalLM",
            "MixtralForCausalLM",
            "OlmoeForCausalLM",
        ],
    );
}

#[test]
fn model_type_stands_in_for_a_missing_architectures_field() {
    // configs saved from a bare config object carry only `model_type`
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    tiny_checkpoint(&hf, "OlmoeForCausalLM", 2);
    edit_config(&hf, |c| {
        c.remove("architectures");
        c.insert("model_type".into(), json!("olmoe"));
    });
    let rep = import_to(&hf, &tmp.path().join("b"), Dtype::F32);
    assert_eq!(
        rep.manifest.architecture.hf_architecture,
        "OlmoeForCausalLM"
    );
    let err = failing_import(|hf| {
        edit_config(hf, |c| {
            c.remove("architectures");
            c.insert("model_type".into(), json!("llama"));
        })
    });
    assert_names(
        &err,
        &[
            "config.json",
            "field `model_type`",
            "llama",
            "Qwen3MoeForCausalLM",
        ],
    );
    let err = failing_import(|hf| edit_config(hf, |c| drop(c.remove("architectures"))));
    assert_names(&err, &["config.json", "field `architectures` missing"]);
}

/// Rewrite the checkpoint, replacing one tensor.
fn replace_tensor(hf: &Path, name: &str, shape: Vec<usize>, dtype: safetensors::Dtype) {
    let p = hf.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let n: usize = shape.iter().product();
    let owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(k, t)| {
            if k == name {
                let sz = n * dtype.bitsize() / 8;
                (k, dtype, shape.clone(), vec![0u8; sz])
            } else {
                (k, t.dtype(), t.shape().to_vec(), t.data().to_vec())
            }
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(k, d, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    drop(st);
    safetensors::serialize_to_file(views, None, &p).unwrap();
}

#[test]
fn shape_mismatch_names_file_and_tensor() {
    let err = failing_import(|hf| {
        replace_tensor(
            hf,
            "model.layers.1.mlp.gate.weight",
            vec![TINY_E, 16],
            safetensors::Dtype::BF16,
        )
    });
    assert_names(
        &err,
        &["model.safetensors: tensor model.layers.1.mlp.gate.weight has shape [4, 16], expected [4, 32]"],
    );
    let err = failing_import(|hf| {
        replace_tensor(
            hf,
            "model.layers.0.mlp.experts.3.down_proj.weight",
            vec![TINY_H, 8],
            safetensors::Dtype::BF16,
        )
    });
    assert_names(
        &err,
        &[
            "model.safetensors",
            "model.layers.0.mlp.experts.3.down_proj.weight",
            "[32, 8]",
        ],
    );
}

#[test]
fn missing_tensor_is_named() {
    let err = failing_import(|hf| {
        let p = hf.join("model.safetensors");
        let bytes = std::fs::read(&p).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let keep: Vec<(String, safetensors::tensor::TensorView)> = st
            .tensors()
            .into_iter()
            .filter(|(k, _)| k != "model.layers.0.self_attn.k_norm.weight")
            .collect();
        let out = safetensors::serialize(keep, None).unwrap();
        std::fs::write(&p, out).unwrap();
    });
    assert_names(
        &err,
        &[
            "model.safetensors",
            "model.layers.0.self_attn.k_norm.weight",
            "missing",
        ],
    );
}

#[test]
fn unsupported_dtypes_are_named() {
    let err = parse_dtype("bf16").unwrap_err().to_string();
    assert_names(&err, &["--dtype", "bf16", "f32, f16"]);
    assert_eq!(parse_dtype("f16").unwrap(), Dtype::F16);
    let err = failing_import(|hf| {
        replace_tensor(
            hf,
            "model.norm.weight",
            vec![TINY_H],
            safetensors::Dtype::I32,
        )
    });
    assert_names(
        &err,
        &["model.safetensors", "tensor model.norm.weight", "dtype I32"],
    );
}

#[test]
fn truncated_safetensors_is_named() {
    let err = failing_import(|hf| {
        let p = hf.join("model.safetensors");
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 100).unwrap();
    });
    assert_names(&err, &["model.safetensors", "truncated"]);
    let err =
        failing_import(|hf| std::fs::write(hf.join("model.safetensors"), b"\x10\x00").unwrap());
    assert_names(&err, &["model.safetensors"]);
}

#[test]
fn existing_bundle_is_kept_without_force_and_replaced_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    tiny_checkpoint(&hf, "OlmoeForCausalLM", 5);
    let out = tmp.path().join("bundle");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("precious.txt"), "keep me").unwrap();
    let err = import(&ImportOptions::new(&hf, &out))
        .unwrap_err()
        .to_string();
    assert_names(&err, &["bundle", "--force"]);
    assert!(out.join("precious.txt").exists());
    let mut o = ImportOptions::new(&hf, &out);
    o.force = true;
    import(&o).unwrap();
    assert!(!out.join("precious.txt").exists());
    assert!(out.join("manifest.json").exists());
    // an empty existing directory is fine without --force
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    import(&ImportOptions::new(&hf, &empty)).unwrap();
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
}
