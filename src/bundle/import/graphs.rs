//! The dense graphs of a bundle, per architecture, following the graph
//! contract in `bundle::manifest::Graphs`: `embed`, one graph per decoder
//! layer (attention with KV cache, post-attention norm, router logits, the
//! gated shared expert when there is one) and `head` (final norm + LM head).
//! Linear weights are stored transposed ([in, out]) so every projection is a
//! plain MatMul.

use super::onnx::{attr_int, Dim, Elem, GraphBuilder};
use super::weights::{transpose, Checkpoint};
use super::ImportError;
use crate::bundle::manifest::{Architecture, Dtype, QkNorm};

const T: Dim = Dim::Sym("T");
const P: Dim = Dim::Sym("P");
const PT: Dim = Dim::Sym("P+T");

pub use crate::bundle::names::{biases, dense_tensors, expert_tensors, Names};

/// Load a [out, in] linear weight as an f32 graph value [in, out].
fn linear_weight(
    g: &mut GraphBuilder,
    ck: &Checkpoint,
    name: &str,
    out_dim: usize,
    in_dim: usize,
) -> Result<String, ImportError> {
    let w = ck.f32(name, &[out_dim, in_dim])?;
    let wt = transpose(&w, out_dim, in_dim);
    Ok(g.weight(name, &[in_dim, out_dim], &wt))
}

fn vector(
    g: &mut GraphBuilder,
    ck: &Checkpoint,
    name: &str,
    len: usize,
) -> Result<String, ImportError> {
    let w = ck.f32(name, &[len])?;
    Ok(g.weight(name, &[len], &w))
}

/// `embed`: `input_ids` i64 [T] -> `hidden` f32 [T, H].
pub fn embed(a: &Architecture, ck: &Checkpoint, dtype: Dtype) -> Result<GraphBuilder, ImportError> {
    let mut g = GraphBuilder::new("embed", dtype);
    let ids = g.input("input_ids", Elem::I64, &[T]);
    let w = ck.f32(Names::embed(), &[a.vocab_size, a.hidden_size])?;
    let table = g.weight_stored(Names::embed(), &[a.vocab_size, a.hidden_size], &w);
    drop(w);
    let rows = g.node("Gather", &[&table, &ids], vec![attr_int("axis", 0)]);
    let hidden = g.to_f32(&rows);
    g.output(
        &hidden,
        "hidden",
        Elem::F32,
        &[T, Dim::Fixed(a.hidden_size)],
    );
    Ok(g)
}

/// `head`: `hidden` [T, H] -> `logits` [T, V].
pub fn head(a: &Architecture, ck: &Checkpoint, dtype: Dtype) -> Result<GraphBuilder, ImportError> {
    let mut g = GraphBuilder::new("head", dtype);
    let x = g.input("hidden", Elem::F32, &[T, Dim::Fixed(a.hidden_size)]);
    let norm_w = vector(&mut g, ck, Names::final_norm(), a.hidden_size)?;
    let n = g.rms_norm(&x, &norm_w, a.rms_norm_eps);
    let src = if a.tie_word_embeddings {
        Names::embed()
    } else {
        Names::lm_head()
    };
    let w = linear_weight(&mut g, ck, src, a.vocab_size, a.hidden_size)?;
    let logits = g.linear(&n, &w, None);
    g.output(&logits, "logits", Elem::F32, &[T, Dim::Fixed(a.vocab_size)]);
    Ok(g)
}

/// rotate_half RoPE: x * cos + cat(-x2, x1) * sin, x [T, heads, D], cos/sin [T, 1, D].
fn rope(g: &mut GraphBuilder, x: &str, cos: &str, sin: &str, d: usize) -> String {
    let half = (d / 2) as i64;
    let x1 = g.slice(x, -1, 0, half);
    let x2 = g.slice(x, -1, half, d as i64);
    let nx2 = g.op("Neg", &[&x2]);
    let rot = g.node("Concat", &[&nx2, &x1], vec![attr_int("axis", -1)]);
    let a = g.op("Mul", &[x, cos]);
    let b = g.op("Mul", &[&rot, sin]);
    g.op("Add", &[&a, &b])
}

/// `layers[l]`: see the graph contract in `bundle::manifest::Graphs`.
pub fn layer(
    a: &Architecture,
    ck: &Checkpoint,
    dtype: Dtype,
    l: usize,
) -> Result<GraphBuilder, ImportError> {
    let (h, d, nh, kvh) = (a.hidden_size, a.head_dim, a.num_heads, a.num_kv_heads);
    let groups = a.groups();
    let n = |s: &str| Names::layer(l, s);
    let mut g = GraphBuilder::new(&format!("layer_{l}"), dtype);

    let hidden = g.input("hidden", Elem::F32, &[T, Dim::Fixed(h)]);
    let cos = g.input("cos", Elem::F32, &[T, Dim::Fixed(d)]);
    let sin = g.input("sin", Elem::F32, &[T, Dim::Fixed(d)]);
    let mask = g.input("mask", Elem::F32, &[T, PT]);
    let past_k = g.input("past_k", Elem::F32, &[P, Dim::Fixed(kvh), Dim::Fixed(d)]);
    let past_v = g.input("past_v", Elem::F32, &[P, Dim::Fixed(kvh), Dim::Fixed(d)]);

    // attention input norm and projections
    let ln1 = vector(&mut g, ck, &n("input_layernorm.weight"), h)?;
    let x = g.rms_norm(&hidden, &ln1, a.rms_norm_eps);
    let (qkv_bias, o_bias) = biases(a);
    let proj = |g: &mut GraphBuilder, p: &str, out: usize| -> Result<String, ImportError> {
        let w = linear_weight(g, ck, &n(&format!("self_attn.{p}.weight")), out, h)?;
        let b = if qkv_bias {
            Some(vector(g, ck, &n(&format!("self_attn.{p}.bias")), out)?)
        } else {
            None
        };
        Ok(g.linear(&x, &w, b.as_deref()))
    };
    let mut q = proj(&mut g, "q_proj", nh * d)?;
    let mut k = proj(&mut g, "k_proj", kvh * d)?;
    let v = proj(&mut g, "v_proj", kvh * d)?;

    if a.qk_norm == QkNorm::Full {
        let qn = vector(&mut g, ck, &n("self_attn.q_norm.weight"), nh * d)?;
        let kn = vector(&mut g, ck, &n("self_attn.k_norm.weight"), kvh * d)?;
        q = g.rms_norm(&q, &qn, a.rms_norm_eps);
        k = g.rms_norm(&k, &kn, a.rms_norm_eps);
    }
    let mut q = g.reshape(&q, &[0, nh as i64, d as i64]);
    let mut k = g.reshape(&k, &[0, kvh as i64, d as i64]);
    let v = g.reshape(&v, &[0, kvh as i64, d as i64]);
    if a.qk_norm == QkNorm::PerHead {
        let qn = vector(&mut g, ck, &n("self_attn.q_norm.weight"), d)?;
        let kn = vector(&mut g, ck, &n("self_attn.k_norm.weight"), d)?;
        q = g.rms_norm(&q, &qn, a.rms_norm_eps);
        k = g.rms_norm(&k, &kn, a.rms_norm_eps);
    }
    let cos3 = g.unsqueeze(&cos, &[1]);
    let sin3 = g.unsqueeze(&sin, &[1]);
    let q = rope(&mut g, &q, &cos3, &sin3, d);
    let k = rope(&mut g, &k, &cos3, &sin3, d);
    g.output(&k, "k", Elem::F32, &[T, Dim::Fixed(kvh), Dim::Fixed(d)]);
    g.output(&v, "v", Elem::F32, &[T, Dim::Fixed(kvh), Dim::Fixed(d)]);

    // attention over past + new: GQA by broadcasting [KVH, G, T, D] x [KVH, 1, D, S]
    let kall = g.node("Concat", &[&past_k, "k"], vec![attr_int("axis", 0)]);
    let vall = g.node("Concat", &[&past_v, "v"], vec![attr_int("axis", 0)]);
    let q4 = g.reshape(&q, &[0, kvh as i64, groups as i64, d as i64]);
    let q4 = g.transpose(&q4, &[1, 2, 0, 3]);
    let kt = g.transpose(&kall, &[1, 2, 0]);
    let kt = g.unsqueeze(&kt, &[1]);
    let vt = g.transpose(&vall, &[1, 0, 2]);
    let vt = g.unsqueeze(&vt, &[1]);
    let scores = g.op("MatMul", &[&q4, &kt]);
    let scale = g.const_f32_scalar("scale", 1.0 / (d as f32).sqrt());
    let scores = g.op("Mul", &[&scores, &scale]);
    let scores = g.op("Add", &[&scores, &mask]);
    let probs = g.node("Softmax", &[&scores], vec![attr_int("axis", -1)]);
    let ctx = g.op("MatMul", &[&probs, &vt]);
    let ctx = g.transpose(&ctx, &[2, 0, 1, 3]);
    let ctx = g.reshape(&ctx, &[0, (nh * d) as i64]);
    let wo = linear_weight(&mut g, ck, &n("self_attn.o_proj.weight"), h, nh * d)?;
    let bo = if o_bias {
        Some(vector(&mut g, ck, &n("self_attn.o_proj.bias"), h)?)
    } else {
        None
    };
    let attn = g.linear(&ctx, &wo, bo.as_deref());
    let resid = g.node_to("Add", &[&hidden, &attn], vec![], "resid");

    // MoE input and router
    let ln2 = vector(&mut g, ck, &n("post_attention_layernorm.weight"), h)?;
    let moe_in = g.rms_norm(&resid, &ln2, a.rms_norm_eps);
    let wr = linear_weight(&mut g, ck, &Names::router(a.kind, l), a.num_experts, h)?;
    let logits = g.linear(&moe_in, &wr, None);

    g.output(&resid, "resid", Elem::F32, &[T, Dim::Fixed(h)]);
    g.output(&moe_in, "moe_in", Elem::F32, &[T, Dim::Fixed(h)]);
    g.output(
        &logits,
        "router_logits",
        Elem::F32,
        &[T, Dim::Fixed(a.num_experts)],
    );
    if let Some(is) = a.shared_expert_intermediate_size {
        let wg = linear_weight(&mut g, ck, &n("mlp.shared_expert.gate_proj.weight"), is, h)?;
        let wu = linear_weight(&mut g, ck, &n("mlp.shared_expert.up_proj.weight"), is, h)?;
        let wd = linear_weight(&mut g, ck, &n("mlp.shared_expert.down_proj.weight"), h, is)?;
        let wsg = linear_weight(&mut g, ck, &n("mlp.shared_expert_gate.weight"), 1, h)?;
        let gate = g.linear(&moe_in, &wg, None);
        let gate = g.silu(&gate);
        let up = g.linear(&moe_in, &wu, None);
        let act = g.op("Mul", &[&gate, &up]);
        let mlp = g.linear(&act, &wd, None);
        let sg = g.linear(&moe_in, &wsg, None);
        let sg = g.op("Sigmoid", &[&sg]);
        let out = g.op("Mul", &[&sg, &mlp]);
        g.output(&out, "shared_out", Elem::F32, &[T, Dim::Fixed(h)]);
    }
    g.order_outputs(&["resid", "moe_in", "router_logits", "k", "v", "shared_out"]);
    Ok(g)
}
