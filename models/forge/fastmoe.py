"""A compact re-implementation of the Qwen3-MoE forward pass used only for *training* speed on
CPU (experts run as one batched matmul per projection instead of a Python loop over experts).
Weights map 1:1 onto transformers' Qwen3MoeForCausalLM (see to_hf_state_dict); train.py checks
that both give the same logits before saving the checkpoint.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        v = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(v + self.eps)).to(x.dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, D = c.hidden_size, c.head_dim
        self.nh, self.nkv, self.D = c.num_attention_heads, c.num_key_value_heads, D
        self.q_proj = nn.Linear(H, self.nh * D, bias=False)
        self.k_proj = nn.Linear(H, self.nkv * D, bias=False)
        self.v_proj = nn.Linear(H, self.nkv * D, bias=False)
        self.o_proj = nn.Linear(self.nh * D, H, bias=False)
        self.q_norm = RMSNorm(D, c.rms_norm_eps)
        self.k_norm = RMSNorm(D, c.rms_norm_eps)
        self.input_layernorm = RMSNorm(H, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(H, c.rms_norm_eps)
        E, I = c.num_experts, c.moe_intermediate_size
        self.E, self.K, self.norm_topk = E, c.num_experts_per_tok, c.norm_topk_prob
        self.gate = nn.Linear(H, E, bias=False)
        std = c.initializer_range
        self.w_gate = nn.Parameter(torch.randn(E, I, H) * std)  # experts.e.gate_proj.weight
        self.w_up = nn.Parameter(torch.randn(E, I, H) * std)    # experts.e.up_proj.weight
        self.w_down = nn.Parameter(torch.randn(E, H, I) * std)  # experts.e.down_proj.weight
        # residual dropout, training only (inactive in eval mode; the exported model has none)
        self.drop = nn.Dropout(0.0)  # train.py --dropout sets p

    def attn(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.nh, self.D)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(B, T, self.nkv, self.D)).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.nh * self.D))

    def expert_weights(self):
        """Per-expert views of the three projections. One unbind each: its backward stacks the experts'
        gradients once, where indexing self.w_gate[j] per expert made autograd zero-fill and add a whole
        [E, I, H] gradient for every expert (time_step.py times both)."""
        return self.w_gate.unbind(0), self.w_up.unbind(0), self.w_down.unbind(0)

    def moe(self, x, valid=None):
        """Routed experts over the tokens in `valid` (all if None; padding is skipped, its output is 0).
        Tokens are grouped by expert and each expert runs one matmul per projection over exactly its
        tokens (no capacity padding: a skewed router costs no extra compute)."""
        B, T, H = x.shape
        xf = x.reshape(-1, H)
        N = xf.shape[0]
        logits = self.gate(xf)
        idx = torch.arange(N) if valid is None else valid.reshape(-1).nonzero().squeeze(1)
        probs = F.softmax(logits[idx], dim=-1, dtype=torch.float)
        w, e = torch.topk(probs, self.K, dim=-1)
        if self.norm_topk:
            w = w / w.sum(-1, keepdim=True)
        w = w.to(x.dtype)
        ef = e.reshape(-1)
        tok = idx.repeat_interleave(self.K)
        wf = w.reshape(-1)
        order = torch.argsort(ef, stable=True)
        es, ts, ws = ef[order], tok[order], wf[order]
        counts = torch.bincount(es, minlength=self.E).tolist()
        xs = xf[ts]
        wg, wu, wd = self.expert_weights()
        outs, start = [], 0
        for j, c in enumerate(counts):
            if c == 0:
                continue
            seg = xs[start:start + c]
            h = F.silu(seg @ wg[j].t()) * (seg @ wu[j].t())
            outs.append(h @ wd[j].t())
            start += c
        y = torch.cat(outs, 0) * ws[:, None]
        final = xf.new_zeros(N, H).index_add(0, ts, y)
        return final.view(B, T, H), logits

    def forward(self, x, cos, sin, valid=None):
        x = x + self.drop(self.attn(self.input_layernorm(x), cos, sin))
        m, logits = self.moe(self.post_attention_layernorm(x), valid)
        return x + self.drop(m), logits


class FastQwen3Moe(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([Layer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        std = c.initializer_range
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, std)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, std)
        D = c.head_dim
        inv = 1.0 / (c.rope_theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
        self.register_buffer("inv_freq", inv, persistent=False)

    def hidden(self, ids, valid=None):
        """Final-norm hidden states and per-layer router logits. `valid` [B, T] bool marks real tokens
        (right padding only: causal attention keeps padding out of every real position)."""
        B, T = ids.shape
        x = self.embed_tokens(ids)
        pos = torch.arange(T).float()
        fr = torch.outer(pos, self.inv_freq)
        emb = torch.cat((fr, fr), -1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        logits = []
        for l in self.layers:
            x, lg = l(x, cos, sin, valid)
            logits.append(lg)
        return self.norm(x), logits


def aux_loss(router_logits, E, K, valid):
    """Switch-style load-balancing loss as transformers' load_balancing_loss_func, on valid tokens."""
    g = torch.cat([lg[valid] for lg in router_logits], 0)
    p = F.softmax(g, dim=-1)
    _, sel = torch.topk(p, K, dim=-1)
    mask = F.one_hot(sel, E).float()  # [N, K, E]
    tokens_per_expert = mask.mean(0)
    prob_per_expert = p.mean(0)
    return (tokens_per_expert * prob_per_expert[None]).sum() * E


def to_hf_state_dict(fm):
    sd = {"model.embed_tokens.weight": fm.embed_tokens.weight, "model.norm.weight": fm.norm.weight,
          "lm_head.weight": fm.lm_head.weight}
    for i, l in enumerate(fm.layers):
        p = f"model.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + f"self_attn.{n}.weight"] = getattr(l, n).weight
        sd[p + "self_attn.q_norm.weight"] = l.q_norm.weight
        sd[p + "self_attn.k_norm.weight"] = l.k_norm.weight
        sd[p + "input_layernorm.weight"] = l.input_layernorm.weight
        sd[p + "post_attention_layernorm.weight"] = l.post_attention_layernorm.weight
        sd[p + "mlp.gate.weight"] = l.gate.weight
        for e in range(l.E):
            sd[p + f"mlp.experts.{e}.gate_proj.weight"] = l.w_gate[e]
            sd[p + f"mlp.experts.{e}.up_proj.weight"] = l.w_up[e]
            sd[p + f"mlp.experts.{e}.down_proj.weight"] = l.w_down[e]
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}
