"""Tiny random-initialised MoE checkpoints (Hub per-expert layout) + golden vectors
for the Rust importer tests.  Deterministic (seeded).

  python models/forge/make_fixtures.py [--out tests/fixtures]
"""
import argparse
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_tokenizer, save_checkpoint, write_golden, write_tokenizer  # noqa: E402

torch.set_num_threads(2)

TOKENIZER_TEXT = [
    "Set the temperature to 22 degrees on the driver side.",
    "Call Alice and tell her I am running late.",
    "Navigate to the central station, please.",
    "Play some jazz music and turn the volume up to 40 percent.",
    "What's the weather like tomorrow in Osaka?",
    "The quick brown fox jumps over the lazy dog.",
    "運転席を二十二度にして。",
    "田中さんに電話して。",
    "明日の大阪の天気を教えてください。",
    "音量を四十パーセントにしてください。",
    "写真を撮って。動画を十秒録画して。",
    "こんにちは、元気ですか？今日はいい天気ですね。",
]

COMMON = dict(
    vocab_size=512,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    attention_dropout=0.0,
    bos_token_id=None,
    pad_token_id=0,
    use_cache=True,
)


def make_model(arch, eos_id):
    from transformers import (MixtralConfig, MixtralForCausalLM, OlmoeConfig, OlmoeForCausalLM,
                              Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM)
    c = dict(COMMON, eos_token_id=eos_id)
    if arch == "qwen3_moe":
        cfg = Qwen3MoeConfig(**c, head_dim=16, intermediate_size=64, moe_intermediate_size=32,
                             num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
                             decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=False,
                             output_router_logits=False, router_aux_loss_coef=0.001)
        cls = Qwen3MoeForCausalLM
    elif arch == "qwen2_moe":
        cfg = Qwen2MoeConfig(**c, intermediate_size=64, moe_intermediate_size=32,
                             shared_expert_intermediate_size=64, num_experts=8, num_experts_per_tok=2,
                             norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[],
                             tie_word_embeddings=False, use_sliding_window=False,
                             output_router_logits=False, qkv_bias=True)
        cls = Qwen2MoeForCausalLM
    elif arch == "mixtral":
        cfg = MixtralConfig(**c, head_dim=16, intermediate_size=32, num_local_experts=8,
                            num_experts_per_tok=2, tie_word_embeddings=True, sliding_window=None,
                            output_router_logits=False)
        cls = MixtralForCausalLM
    elif arch == "olmoe":
        cfg = OlmoeConfig(**c, intermediate_size=32, num_experts=8, num_experts_per_tok=2,
                          norm_topk_prob=False, tie_word_embeddings=False, clip_qkv=None,
                          output_router_logits=False)
        cls = OlmoeForCausalLM
    else:
        raise ValueError(arch)
    cfg._attn_implementation = "eager"
    model = cls(cfg)
    # non-trivial random init (biases and norms too, so the importer can't get away with defaults)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                # tied embeddings: keep them small so greedy decoding does not just repeat the input token
                std = 0.3 if cfg.tie_word_embeddings else 1.0
                p.copy_(std * torch.randn(p.shape, generator=g))
            elif name.endswith("gate.weight") and "shared" not in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures"))
    args = ap.parse_args()
    torch.manual_seed(0)
    random.seed(0)
    tok = build_tokenizer(TOKENIZER_TEXT * 4, vocab_size=512,
                          specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    assert tok.get_vocab_size() <= 512, tok.get_vocab_size()
    eos_id = tok.token_to_id("<|im_end|>")
    rng = random.Random(42)
    prompts = []
    for i in range(3):
        n = rng.randint(5, 12)
        prompts.append(("", [rng.randrange(0, 512) for _ in range(n)]))
    for arch in ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe"]:
        out_dir = os.path.join(args.out, arch)
        model = make_model(arch, eos_id)
        save_checkpoint(model, out_dir)
        write_tokenizer(tok, out_dir)
        write_golden(model, prompts, os.path.join(out_dir, "golden.safetensors"), n_greedy=8, stop_id=None)
        verify(arch, out_dir)
        print(arch, "ok", sum(p.numel() for p in model.parameters()), "params")


def verify(arch, out_dir):
    """Reload from the written files with from_pretrained and compare against golden."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(out_dir, attn_implementation="eager", torch_dtype=torch.float32)
    m.eval()
    g = load_file(os.path.join(out_dir, "golden.safetensors"))
    i = 0
    while f"p{i}.input_ids" in g:
        with torch.no_grad():
            out = m(input_ids=g[f"p{i}.input_ids"][None], use_cache=False, output_router_logits=True)
        err = (out.logits[0] - g[f"p{i}.logits"]).abs().max().item()
        assert err < 1e-4, (arch, i, err)
        # the model's own router logits must give the same top-k as the golden file
        for l, rl in enumerate(out.router_logits):
            probs = torch.softmax(rl.float(), -1)
            w, e = torch.topk(probs, m.config.num_experts_per_tok, -1)
            assert torch.equal(e, g[f"p{i}.router_ids"][l]), (arch, i, l)
        i += 1


if __name__ == "__main__":
    main()
