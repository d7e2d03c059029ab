//! One decoder layer's dense work, natively, under the same contract as the
//! bundle's layer graph (`bundle::manifest::Graphs`): input norm, q/k/v
//! projections (biases, q/k norms as the architecture has them), RoPE,
//! grouped-query attention over the past and the new keys, output
//! projection and residual, post-attention norm, router logits, and the
//! gated shared expert of Qwen2-MoE. Routed experts are not here (the engine
//! runs them). Written once for every architecture: what differs is data in
//! `Architecture` (biases, q/k norm kind, shared expert).

use std::sync::Arc;

use super::linear::{matmul, Rows};
use super::ops::{attention, rms_norm_rows, rope, silu};
use super::weights::{DenseWeights, Mat};
use crate::bundle::manifest::{Architecture, QkNorm};
use crate::bundle::names::{biases, Names};
use crate::runtime::pool::Pool;
use crate::runtime::{Graph, RuntimeError, Tensor, TensorView, ViewData};

struct Shared {
    gate: Mat,
    up: Mat,
    down: Mat,
    /// [1, H] gate of the shared expert's output.
    gate_out: Mat,
}

pub struct Layer {
    a: Architecture,
    pool: Arc<Pool>,
    ln1: Vec<f32>,
    ln2: Vec<f32>,
    q: Mat,
    k: Mat,
    v: Mat,
    o: Mat,
    bq: Option<Vec<f32>>,
    bk: Option<Vec<f32>>,
    bv: Option<Vec<f32>>,
    bo: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    router: Mat,
    shared: Option<Shared>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl Layer {
    pub fn load(
        a: &Architecture,
        w: &DenseWeights,
        l: usize,
        pool: Arc<Pool>,
    ) -> Result<Layer, RuntimeError> {
        let (h, d, nh, kvh) = (a.hidden_size, a.head_dim, a.num_heads, a.num_kv_heads);
        let n = |s: &str| Names::layer(l, s);
        let (qkv_bias, o_bias) = biases(a);
        let bias = |p: &str, len: usize| -> Result<Option<Vec<f32>>, RuntimeError> {
            if qkv_bias {
                w.vector(&n(&format!("self_attn.{p}.bias")), len).map(Some)
            } else {
                Ok(None)
            }
        };
        let (qn, kn) = match a.qk_norm {
            QkNorm::None => (None, None),
            QkNorm::PerHead => (
                Some(w.vector(&n("self_attn.q_norm.weight"), d)?),
                Some(w.vector(&n("self_attn.k_norm.weight"), d)?),
            ),
            QkNorm::Full => (
                Some(w.vector(&n("self_attn.q_norm.weight"), nh * d)?),
                Some(w.vector(&n("self_attn.k_norm.weight"), kvh * d)?),
            ),
        };
        let shared = match a.shared_expert_intermediate_size {
            Some(is) => Some(Shared {
                gate: w.mat(&n("mlp.shared_expert.gate_proj.weight"), is, h)?,
                up: w.mat(&n("mlp.shared_expert.up_proj.weight"), is, h)?,
                down: w.mat(&n("mlp.shared_expert.down_proj.weight"), h, is)?,
                gate_out: w.mat(&n("mlp.shared_expert_gate.weight"), 1, h)?,
            }),
            None => None,
        };
        let mut outputs: Vec<String> = ["resid", "moe_in", "router_logits", "k", "v"]
            .map(String::from)
            .to_vec();
        if shared.is_some() {
            outputs.push("shared_out".into());
        }
        Ok(Layer {
            a: a.clone(),
            pool,
            ln1: w.vector(&n("input_layernorm.weight"), h)?,
            ln2: w.vector(&n("post_attention_layernorm.weight"), h)?,
            q: w.mat(&n("self_attn.q_proj.weight"), nh * d, h)?,
            k: w.mat(&n("self_attn.k_proj.weight"), kvh * d, h)?,
            v: w.mat(&n("self_attn.v_proj.weight"), kvh * d, h)?,
            o: w.mat(&n("self_attn.o_proj.weight"), h, nh * d)?,
            bq: bias("q_proj", nh * d)?,
            bk: bias("k_proj", kvh * d)?,
            bv: bias("v_proj", kvh * d)?,
            bo: if o_bias {
                Some(w.vector(&n("self_attn.o_proj.bias"), h)?)
            } else {
                None
            },
            q_norm: qn,
            k_norm: kn,
            router: w.mat(&Names::router(a.kind, l), a.num_experts, h)?,
            shared,
            inputs: ["hidden", "cos", "sin", "mask", "past_k", "past_v"]
                .map(String::from)
                .to_vec(),
            outputs,
        })
    }

    fn proj(&self, w: Rows<'_>, x: &[f32], t: usize, bias: Option<&Vec<f32>>) -> Vec<f32> {
        let mut y = vec![0f32; t * w.rows];
        matmul(&self.pool, w, x, t, &mut y);
        if let Some(b) = bias {
            for row in y.chunks_exact_mut(w.rows) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
        y
    }
}

fn f32_input<'a>(
    inputs: &'a [TensorView<'_>],
    i: usize,
    name: &str,
) -> Result<&'a [f32], RuntimeError> {
    match inputs.get(i).map(|v| v.data) {
        Some(ViewData::F32(x)) => Ok(x),
        _ => Err(RuntimeError::Run {
            graph: "native layer".into(),
            msg: format!("input {i} ({name}) must be f32"),
        }),
    }
}

impl Graph for Layer {
    fn input_names(&self) -> &[String] {
        &self.inputs
    }
    fn output_names(&self) -> &[String] {
        &self.outputs
    }

    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, RuntimeError> {
        let a = &self.a;
        let (h, d, nh, kvh) = (a.hidden_size, a.head_dim, a.num_heads, a.num_kv_heads);
        let hidden = f32_input(inputs, 0, "hidden")?;
        let cos = f32_input(inputs, 1, "cos")?;
        let sin = f32_input(inputs, 2, "sin")?;
        let mask = f32_input(inputs, 3, "mask")?;
        let past_k = f32_input(inputs, 4, "past_k")?;
        let past_v = f32_input(inputs, 5, "past_v")?;
        let t = hidden.len() / h;
        let p = past_k.len() / (kvh * d);
        if hidden.len() != t * h
            || cos.len() != t * d
            || mask.len() != t * (p + t)
            || past_v.len() != past_k.len()
        {
            return Err(RuntimeError::Run {
                graph: "native layer".into(),
                msg: format!("input shapes disagree (T={t}, P={p})"),
            });
        }
        let eps = a.rms_norm_eps as f32;

        let mut x = hidden.to_vec();
        rms_norm_rows(&mut x, &self.ln1, eps);
        let mut q = self.proj(self.q.rows(), &x, t, self.bq.as_ref());
        let mut k = self.proj(self.k.rows(), &x, t, self.bk.as_ref());
        let v = self.proj(self.v.rows(), &x, t, self.bv.as_ref());
        // per head or over the whole projection: the weights' length says which
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            rms_norm_rows(&mut q, qn, eps);
            rms_norm_rows(&mut k, kn, eps);
        }
        rope(&mut q, cos, sin, nh, d);
        rope(&mut k, cos, sin, kvh, d);

        let ctx = attention(
            &self.pool, &q, past_k, &k, past_v, &v, mask, t, p, nh, kvh, d,
        );
        let attn = self.proj(self.o.rows(), &ctx, t, self.bo.as_ref());
        let resid: Vec<f32> = hidden.iter().zip(&attn).map(|(a, b)| a + b).collect();
        let mut moe_in = resid.clone();
        rms_norm_rows(&mut moe_in, &self.ln2, eps);
        let logits = self.proj(self.router.rows(), &moe_in, t, None);

        let mut out = vec![
            Tensor::f32(vec![t, h], resid),
            Tensor::f32(vec![t, h], moe_in.clone()),
            Tensor::f32(vec![t, a.num_experts], logits),
            Tensor::f32(vec![t, kvh, d], k),
            Tensor::f32(vec![t, kvh, d], v),
        ];
        if let Some(s) = &self.shared {
            let is = s.gate.rows().rows;
            let g = self.proj(s.gate.rows(), &moe_in, t, None);
            let u = self.proj(s.up.rows(), &moe_in, t, None);
            let act: Vec<f32> = g.iter().zip(&u).map(|(g, u)| silu(*g) * u).collect();
            let mut y = self.proj(s.down.rows(), &act, t, None);
            let sg = self.proj(s.gate_out.rows(), &moe_in, t, None);
            for (row, g) in y.chunks_exact_mut(h).zip(&sg) {
                let g = 1.0 / (1.0 + (-g).exp());
                row.iter_mut().for_each(|v| *v *= g);
            }
            debug_assert_eq!(act.len(), t * is);
            out.push(Tensor::f32(vec![t, h], y));
        }
        Ok(out)
    }
}
