"""Train the tokenizer and the tiny Qwen3-MoE demo model.

  python models/forge/train.py [--minutes 20] [--threads 2]

Writes models/assist-moe/hf/ (config.json, model.safetensors f32, tokenizer.json,
tokenizer_config.json, generation_config.json), checkpointing periodically so that a
cut-off run still leaves a usable model.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_tokenizer, render_prompt, save_checkpoint, write_tokenizer  # noqa: E402
from gen_corpus import MODEL_DIR, target_text  # noqa: E402


def load_jsonl(p):
    with open(p, encoding="utf-8") as f:
        return [json.loads(l) for l in f]


def encode(tok, ex):
    p = tok.encode(render_prompt(ex["messages"]), add_special_tokens=False).ids
    t = tok.encode(target_text(ex["expected"]), add_special_tokens=False).ids
    return p, t


def make_config(vocab, eos, pad, args):
    from transformers import Qwen3MoeConfig
    return Qwen3MoeConfig(
        vocab_size=vocab, hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.heads // 2, head_dim=args.hidden // args.heads, intermediate_size=args.hidden * 4,
        moe_intermediate_size=args.moe_inter, num_experts=16, num_experts_per_tok=2, norm_topk_prob=True,
        decoder_sparse_step=1, mlp_only_layers=[], max_position_embeddings=512, rope_theta=10000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=False, output_router_logits=True,
        router_aux_loss_coef=args.aux_coef, bos_token_id=None, eos_token_id=eos, pad_token_id=pad,
        attention_dropout=0.0, use_cache=True, initializer_range=0.02,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--max-steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--moe-inter", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4, help="attention heads (key/value heads: half; head_dim hidden/heads)")
    ap.add_argument("--aux-coef", type=float, default=0.02)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-every", type=float, default=420.0, help="seconds")
    ap.add_argument("--resume", default=None, help="hf checkpoint dir to continue from (keeps its tokenizer/config)")
    ap.add_argument("--skip-batches", type=int, default=0,
                    help="skip this many batches of the first epoch (the ones the resumed run already saw)")
    ap.add_argument("--deadline-utc", default=None, help="HH:MM UTC; overrides --minutes with the time left")
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--const-frac", type=float, default=0.0,
                    help="fraction of the budget at constant lr before the cosine decay")
    ap.add_argument("--tie", action="store_true",
                    help="train with the output head tied to the embedding (exported as an equal lm_head copy)")
    ap.add_argument("--out-dir", default=None, help="checkpoint dir (default models/assist-moe/hf)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=None, help="corpus dir (default models/assist-moe/data)")
    ap.add_argument("--prompt-loss", type=float, default=0.3,
                    help="weight of an auxiliary next-token loss on the request tokens (0: answer only)")
    ap.add_argument("--dropout", type=float, default=0.0,
                    help="residual dropout on the attention and expert outputs while training (not exported)")
    ap.add_argument("--eval-test", type=int, default=0,
                    help="at each checkpoint, teacher-forced exact match on the first N test requests")
    args = ap.parse_args()
    if args.heads % 2 or args.hidden % args.heads:
        ap.error(f"--heads {args.heads}: must be even and divide --hidden {args.hidden}")
    if args.deadline_utc:
        import datetime
        now = datetime.datetime.now(datetime.timezone.utc)
        hh, mm = map(int, args.deadline_utc.split(":"))
        end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        args.minutes = (end - now).total_seconds() / 60 - 1.0  # leave room for the final valid + export
        print(f"budget {args.minutes:.1f} min (until {args.deadline_utc} UTC)", flush=True)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    data_dir = args.data_dir or os.path.join(MODEL_DIR, "data")
    out_dir = args.out_dir or os.path.join(MODEL_DIR, "hf")
    log_path = os.path.join(os.path.dirname(os.path.abspath(out_dir)), "train_log.json")
    torch.set_num_threads(args.threads)
    train = load_jsonl(os.path.join(data_dir, "train.jsonl"))
    valid = load_jsonl(os.path.join(data_dir, "valid.jsonl"))

    prior = {}
    if args.resume:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(os.path.join(args.resume, "tokenizer.json"))
        if os.path.abspath(args.resume) != os.path.abspath(out_dir):
            import shutil
            os.makedirs(out_dir, exist_ok=True)
            for fn in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(os.path.join(args.resume, fn), os.path.join(out_dir, fn))
        if os.path.exists(log_path):
            prior = json.load(open(log_path))
    else:
        texts = [render_prompt(ex["messages"]) + target_text(ex["expected"]) for ex in train]
        tok = build_tokenizer(texts, args.vocab)
        write_tokenizer(tok, out_dir)
    V = tok.get_vocab_size()
    eos = tok.token_to_id("<|im_end|>")
    pad = tok.token_to_id("<|endoftext|>")
    print(f"tokenizer vocab {V}", flush=True)

    enc_train = [encode(tok, ex) for ex in train]
    enc_valid = [encode(tok, ex) for ex in valid]
    enc_test = []
    if args.eval_test:
        test = load_jsonl(os.path.join(data_dir, "test.jsonl"))[:args.eval_test]
        enc_test = [encode(tok, ex) for ex in test]
    lens = [len(p) + len(t) for p, t in enc_train]
    print(f"train {len(train)} seqs, mean len {sum(lens) / len(lens):.1f}, max {max(lens)}", flush=True)

    from transformers import GenerationConfig, Qwen3MoeForCausalLM
    from fastmoe import FastQwen3Moe, aux_loss, to_hf_state_dict
    if args.resume:
        from transformers import Qwen3MoeConfig
        from safetensors.torch import load_file
        cfg = Qwen3MoeConfig.from_pretrained(args.resume)
        cfg.output_router_logits = True
        assert cfg.vocab_size == V and cfg.eos_token_id == eos and cfg.pad_token_id == pad
        fast = FastQwen3Moe(cfg)
        sd = load_file(os.path.join(args.resume, "model.safetensors"))
        hf_keys = to_hf_state_dict(fast).keys()
        assert set(sd) == set(hf_keys), set(sd) ^ set(hf_keys)
        with torch.no_grad():
            fast.embed_tokens.weight.copy_(sd["model.embed_tokens.weight"])
            fast.norm.weight.copy_(sd["model.norm.weight"])
            fast.lm_head.weight.copy_(sd["lm_head.weight"])
            for i, l in enumerate(fast.layers):
                p = f"model.layers.{i}."
                for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
                    getattr(l, n).weight.copy_(sd[p + f"self_attn.{n}.weight"])
                l.q_norm.weight.copy_(sd[p + "self_attn.q_norm.weight"])
                l.k_norm.weight.copy_(sd[p + "self_attn.k_norm.weight"])
                l.input_layernorm.weight.copy_(sd[p + "input_layernorm.weight"])
                l.post_attention_layernorm.weight.copy_(sd[p + "post_attention_layernorm.weight"])
                l.gate.weight.copy_(sd[p + "mlp.gate.weight"])
                for e in range(l.E):
                    l.w_gate[e].copy_(sd[p + f"mlp.experts.{e}.gate_proj.weight"])
                    l.w_up[e].copy_(sd[p + f"mlp.experts.{e}.up_proj.weight"])
                    l.w_down[e].copy_(sd[p + f"mlp.experts.{e}.down_proj.weight"])
        print(f"resumed from {args.resume} (prior steps {prior.get('steps')})", flush=True)
    else:
        cfg = make_config(V, eos, pad, args)
        fast = FastQwen3Moe(cfg)  # same math as Qwen3MoeForCausalLM, batched experts (CPU speed)
    if args.tie:
        fast.lm_head.weight = fast.embed_tokens.weight
    for layer in fast.layers:
        layer.drop.p = args.dropout
    gen_cfg = GenerationConfig(eos_token_id=eos, pad_token_id=pad, do_sample=False, max_new_tokens=64, bos_token_id=None)

    def export(final=False):
        hf = Qwen3MoeForCausalLM(cfg)
        hf.load_state_dict(to_hf_state_dict(fast), strict=True)
        hf.eval()
        hf.generation_config = gen_cfg
        # the exported model must compute exactly what was trained
        ids, _, _ = batchify(enc_valid[:8])
        was_training = fast.training
        fast.eval()
        with torch.no_grad():
            a = fast.lm_head(fast.hidden(ids)[0])
            b = hf(input_ids=ids).logits
        fast.train(was_training)
        err = (a - b).abs().max().item()
        assert err < 1e-3, err
        if final or args.resume:
            hf.config.output_router_logits = False
        save_checkpoint(hf, out_dir)
        return hf

    def write_log(vl):
        log = {"steps": prior.get("steps", 0) + step, "seconds": prior.get("seconds", 0) + round(time.time() - t0),
               "valid_ce": vl, "params": nparam, "train_examples": len(train), "args": vars(args)}
        if args.resume:
            log["resumed"] = {"from_steps": prior.get("steps"), "from_seconds": prior.get("seconds"),
                              "from_valid_ce": prior.get("valid_ce"), "from_args": prior.get("args"),
                              "this_run_steps": step, "this_run_seconds": round(time.time() - t0)}
        with open(log_path, "w") as f:
            json.dump(log, f, indent=2)

    nparam = sum(p.numel() for p in fast.parameters())
    print(f"params {nparam / 1e6:.2f}M", flush=True)

    def batchify(items):
        L = max(len(p) + len(t) for p, t in items)
        ids = torch.full((len(items), L), pad, dtype=torch.long)
        lab = torch.full((len(items), L), -100, dtype=torch.long)
        att = torch.zeros((len(items), L), dtype=torch.long)
        for i, (p, t) in enumerate(items):
            s = p + t
            ids[i, :len(s)] = torch.tensor(s)
            lab[i, len(p):len(s)] = torch.tensor(t)
            att[i, :len(s)] = 1
        return ids, lab, att

    # length-bucketed batches
    def epoch_batches(rng):
        idx = list(range(len(enc_train)))
        rng.shuffle(idx)
        chunks = [idx[i:i + args.batch * 50] for i in range(0, len(idx), args.batch * 50)]
        batches = []
        for c in chunks:
            c.sort(key=lambda i: lens[i])
            batches += [c[i:i + args.batch] for i in range(0, len(c), args.batch)]
        rng.shuffle(batches)
        return batches

    decay, no_decay = [], []
    for n, p in fast.named_parameters():
        (no_decay if p.ndim < 2 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    if args.resume:
        print(f"resumed valid ce {valid_loss(fast, enc_valid, batchify):.4f}", flush=True)
    budget = args.minutes * 60
    warm = args.warmup
    rng = random.Random(args.seed)
    t0 = time.time()
    last_ckpt = t0
    step = 0
    done = False
    ema = None
    ep = 0
    while not done:
        ep += 1
        bs = epoch_batches(rng)
        if ep == 1 and args.skip_batches:
            bs = bs[args.skip_batches:]
        for b in bs:
            elapsed = time.time() - t0
            prog = max(step / args.max_steps, elapsed / budget)
            if prog >= 1.0:
                done = True
                break
            cp = max(0.0, (prog - args.const_frac) / (1.0 - args.const_frac))
            lr = args.lr * min(1.0, (step + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * cp)))
            for g in opt.param_groups:
                g["lr"] = lr
            ids, lab, att = batchify([enc_train[i] for i in b])
            fast.train()
            # logits only where the loss is taken (answer tokens): the lm_head dominates otherwise
            hid, router_logits = fast.hidden(ids, att.bool())
            tgt = lab[:, 1:]
            sel = tgt != -100
            h = hid[:, :-1][sel]
            ce_t = torch.nn.functional.cross_entropy(fast.lm_head(h).float(), tgt[sel])
            if args.prompt_loss > 0:
                nxt = ids[:, 1:]
                psel = (lab[:, 1:] == -100) & att[:, 1:].bool()
                ce_p = torch.nn.functional.cross_entropy(fast.lm_head(hid[:, :-1][psel]).float(), nxt[psel])
                ce_t_total = ce_t + args.prompt_loss * ce_p
            else:
                ce_t_total = ce_t
            aux_t = aux_loss(router_logits, cfg.num_experts, cfg.num_experts_per_tok, att.reshape(-1).bool())
            loss = ce_t_total + cfg.router_aux_loss_coef * aux_t
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(fast.parameters(), 1.0)
            opt.step()
            step += 1
            ce = ce_t.item()
            ema = ce if ema is None else 0.98 * ema + 0.02 * ce
            if step % 50 == 0:
                print(f"step {step} ep {ep} {elapsed:.0f}s lr {lr:.2e} ce {ema:.4f} aux {aux_t.item():.3f}", flush=True)
            if time.time() - last_ckpt > args.ckpt_every:
                vl = valid_loss(fast, enc_valid, batchify)
                print(f"  checkpoint step {step}: valid ce {vl:.4f}", flush=True)
                if args.eval_test:
                    print(f"  test exact (teacher-forced) {tf_exact(fast, enc_test, batchify):.4f}", flush=True)
                export()
                if args.resume:
                    write_log(vl)
                last_ckpt = time.time()
    vl = valid_loss(fast, enc_valid, batchify)
    print(f"final step {step} {time.time() - t0:.0f}s valid ce {vl:.4f}", flush=True)
    if args.eval_test:
        print(f"  test exact (teacher-forced) {tf_exact(fast, enc_test, batchify):.4f}", flush=True)
    export(final=True)
    write_log(vl)
    print("saved", out_dir, flush=True)


@torch.no_grad()
def tf_exact(fast, enc, batchify):
    """Share of requests whose every answer token is the argmax (greedy decoding reproduces them)."""
    fast.eval()
    ok = 0
    for i in range(0, len(enc), 64):
        ids, lab, att = batchify(enc[i:i + 64])
        hid, _ = fast.hidden(ids, att.bool())
        pred = fast.lm_head(hid[:, :-1]).argmax(-1)
        tgt = lab[:, 1:]
        ok += ((pred == tgt) | (tgt == -100)).all(-1).sum().item()
    fast.train()
    return ok / len(enc)


@torch.no_grad()
def valid_loss(fast, enc, batchify):
    fast.eval()
    tot, n = 0.0, 0
    for i in range(0, len(enc), 64):
        ids, lab, att = batchify(enc[i:i + 64])
        hid, _ = fast.hidden(ids, att.bool())
        tgt = lab[:, 1:]
        sel = tgt != -100
        tot += torch.nn.functional.cross_entropy(fast.lm_head(hid[:, :-1][sel]), tgt[sel], reduction="sum").item()
        n += sel.sum().item()
    fast.train()
    return tot / n


if __name__ == "__main__":
    main()
