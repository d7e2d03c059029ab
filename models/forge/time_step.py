"""Time one training step of fastmoe.py against the per-expert-indexing version it replaced.

  python models/forge/time_step.py [--batches 140] [--threads 2]

Both variants start from the same weights and take alternate steps on the same batches of the
training split in one process, so machine noise hits them equally; the losses must stay equal
(the change is in how autograd accumulates the expert gradients, not in the math).
"""
import argparse
import copy
import json
import os
import random
import sys
import time
import types

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fastmoe  # noqa: E402
from common import render_prompt  # noqa: E402
from gen_corpus import MODEL_DIR, target_text  # noqa: E402


def indexed_expert_weights(self):
    """fastmoe.Layer.expert_weights before the unbind: the parameters themselves, so that the expert
    loop indexes self.w_gate[j] (autograd zero-fills and adds a whole [E, I, H] gradient per expert)."""
    return self.w_gate, self.w_up, self.w_down


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=140)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hf", default=os.path.join(MODEL_DIR, "hf"), help="tokenizer and config to use")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tokenizers import Tokenizer
    from transformers import Qwen3MoeConfig
    tok = Tokenizer.from_file(os.path.join(args.hf, "tokenizer.json"))
    cfg = Qwen3MoeConfig.from_pretrained(args.hf)
    path = os.path.join(MODEL_DIR, "data", "train.jsonl")
    if not os.path.exists(path):
        sys.exit(f"{path} missing: run gen_corpus.py or gunzip train.jsonl.gz")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(l) for l, _ in zip(f, range(args.batches * args.batch))]
    enc = [tok.encode(render_prompt(r["messages"]) + target_text(r["expected"]), add_special_tokens=False).ids
           for r in rows]
    random.Random(0).shuffle(enc)
    pad = tok.token_to_id("<|endoftext|>")

    def batch(items):
        L = max(len(s) for s in items)
        ids = torch.full((len(items), L), pad, dtype=torch.long)
        att = torch.zeros((len(items), L), dtype=torch.bool)
        for i, s in enumerate(items):
            ids[i, :len(s)] = torch.tensor(s)
            att[i, :len(s)] = True
        return ids, att

    torch.manual_seed(0)
    new = fastmoe.FastQwen3Moe(cfg)
    old = copy.deepcopy(new)
    for layer in old.layers:
        layer.expert_weights = types.MethodType(indexed_expert_weights, layer)
    opt_new = torch.optim.AdamW(new.parameters(), lr=1e-3)
    opt_old = torch.optim.AdamW(old.parameters(), lr=1e-3)

    def step(model, opt, items):
        ids, att = batch(items)
        t = time.perf_counter()
        h, router = model.hidden(ids, att)
        loss = F.cross_entropy(model.lm_head(h[:, :-1][att[:, 1:]]), ids[:, 1:][att[:, 1:]])
        loss = loss + cfg.router_aux_loss_coef * fastmoe.aux_loss(router, cfg.num_experts, cfg.num_experts_per_tok,
                                                                  att.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t, loss.item()

    t_new = t_old = 0.0
    worst = 0.0
    for i in range(args.batches):
        items = enc[i * args.batch:(i + 1) * args.batch]
        a, la = step(old, opt_old, items)
        b, lb = step(new, opt_new, items)
        if i >= 5:  # warm-up steps not timed
            t_old += a
            t_new += b
        worst = max(worst, abs(la - lb))
    n = args.batches - 5
    print(f"{n} steps each, batch {args.batch}, {args.threads} threads")
    print(f"indexed experts (before): {t_old / n * 1000:.1f} ms/step")
    print(f"unbound experts (fastmoe.py): {t_new / n * 1000:.1f} ms/step  ratio {t_new / t_old:.3f}")
    print(f"largest loss difference over the run: {worst:.2e}")


if __name__ == "__main__":
    main()
