"""Shared helpers for the forge scripts: tokenizer building, Hub-layout
checkpoint writing and golden reference vectors.

Golden file contract (format "1"), one entry per prompt i:
  p{i}.input_ids      I64 [T]
  p{i}.logits         F32 [T, V]        one forward pass, no cache, eager attention, f32
  p{i}.hidden         F32 [L+1, T, H]   [0] embedding output, [l+1] decoder layer l output
                                        (residual stream, before the final norm)
  p{i}.router_ids     I64 [L, T, K]     top-k experts sorted by weight, descending
  p{i}.router_weights F32 [L, T, K]     softmax over all experts, top-k, renormalised iff
                                        norm_topk_prob (Mixtral: always)
  p{i}.greedy         I64 [N]           greedy continuation with KV cache
metadata: format, prompts (JSON list of prompt texts, "" for random ids), dtype, transformers
"""
import json
import os

import torch
import transformers
from safetensors.torch import save_file

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<|fallback|>"]

# Qwen2-style split, except that every Han / Hiragana / Katakana character is its own
# pre-token (so a Japanese name or message is tokenised the same way inside a request
# and inside the JSON answer: copying is token-for-token).  Latin words never absorb the space or
# quote before them (" Alice" in a request and "Alice" in the JSON answer are the same tokens), and a quote
# starts a new pre-token (a value's last "?" or "." is not merged with the closing quote).
# Digits are split one by one.
SPLIT_REGEX = (
    r"[\p{Han}\p{Hiragana}\p{Katakana}ー々]"
    r"|(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|[A-Za-z\u00C0-\u024F]+"
    r"|\p{N}"
    r'| ?[^\s\p{L}\p{N}"]+[\r\n]*'
    r'|"[^\s\p{L}\p{N}]*'
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def render_prompt(messages):
    """The chat format the daemon relies on (system message, if any, is just the first message)."""
    out = []
    for m in messages:
        out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    out.append("<|im_start|>assistant\n")
    return "".join(out)


def build_tokenizer(texts, vocab_size, specials=SPECIAL_TOKENS):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers, Regex

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def write_tokenizer(tok, out_dir, eos="<|im_end|>", model_max_length=512):
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    added = {}
    for t in SPECIAL_TOKENS:
        i = tok.token_to_id(t)
        if i is None:
            continue
        added[str(i)] = {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                         "single_word": False, "special": True}
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", eos) and tok.token_to_id(t) is not None],
        "bos_token": None,
        "eos_token": eos,
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "split_special_tokens": False,
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
        f.write("\n")


def hub_state_dict(model):
    """State dict in the Hugging Face Hub per-expert layout (transformers 4.57 keeps it natively).
    Tied lm_head is omitted, as the Hub checkpoints do."""
    sd = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        assert "gate_up_proj" not in k, f"fused expert layout found ({k}); pin transformers 4.57.x"
        sd[k] = v.detach().to(torch.float32).contiguous().clone()
    return sd


def save_checkpoint(model, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    model.config.torch_dtype = "float32"
    # A config built bare has no `architectures`; Hugging Face tools and
    # llama.cpp's converter pick the model class from it.
    if not getattr(model.config, "architectures", None):
        model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(out_dir)
    save_file(hub_state_dict(model), os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out_dir)


def _moe_blocks(model):
    blocks = []
    for layer in model.model.layers:
        blk = getattr(layer, "mlp", None)
        if blk is None or not hasattr(blk, "gate"):
            blk = getattr(layer, "block_sparse_moe", None)
        blocks.append(blk)
    return blocks


def _norm_topk(config):
    if config.model_type == "mixtral":
        return True
    return bool(getattr(config, "norm_topk_prob", False))


@torch.no_grad()
def golden_for_prompt(model, input_ids, n_greedy, stop_id=None):
    """Returns dict of tensors for one prompt (without the p{i}. prefix)."""
    cfg = model.config
    k = cfg.num_experts_per_tok
    ids = torch.tensor([input_ids], dtype=torch.long)
    hiddens = {}
    router_logits = {}
    hooks = []
    hooks.append(model.model.embed_tokens.register_forward_hook(
        lambda m, i, o: hiddens.__setitem__(0, o.detach().clone())))
    for li, layer in enumerate(model.model.layers):
        def lh(m, i, o, li=li):
            h = o[0] if isinstance(o, (tuple, list)) else o
            hiddens[li + 1] = h.detach().clone()
        hooks.append(layer.register_forward_hook(lh))
    for li, blk in enumerate(_moe_blocks(model)):
        def gh(m, i, o, li=li):
            x = i[0]
            # recompute router logits from the gate input to be independent of module internals
            router_logits[li] = torch.nn.functional.linear(x.reshape(-1, x.shape[-1]).float(), m.weight.float())
        hooks.append(blk.gate.register_forward_hook(gh))
    try:
        out = model(input_ids=ids, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    L = cfg.num_hidden_layers
    T = len(input_ids)
    logits = out.logits[0].float()
    hidden = torch.stack([hiddens[l][0].float() for l in range(L + 1)], 0)
    rids, rws = [], []
    for l in range(L):
        probs = torch.softmax(router_logits[l].float(), dim=-1)
        w, e = torch.topk(probs, k, dim=-1, sorted=True)
        if _norm_topk(cfg):
            w = w / w.sum(-1, keepdim=True)
        rids.append(e)
        rws.append(w)
    router_ids = torch.stack(rids, 0).reshape(L, T, k)
    router_weights = torch.stack(rws, 0).reshape(L, T, k)

    # greedy with KV cache
    greedy = []
    out = model(input_ids=ids, use_cache=True)
    past = out.past_key_values
    nxt = int(out.logits[0, -1].argmax())
    for step in range(n_greedy):
        greedy.append(nxt)
        if stop_id is not None and nxt == stop_id:
            break
        if step == n_greedy - 1:
            break
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        nxt = int(out.logits[0, -1].argmax())
    return {
        "input_ids": ids[0].to(torch.int64).contiguous(),
        "logits": logits.contiguous(),
        "hidden": hidden.contiguous(),
        "router_ids": router_ids.to(torch.int64).contiguous(),
        "router_weights": router_weights.float().contiguous(),
        "greedy": torch.tensor(greedy, dtype=torch.int64),
    }


def write_golden(model, prompts, path, n_greedy, stop_id=None):
    """prompts: list of (text_or_empty, input_ids)."""
    model.eval()
    tensors = {}
    for i, (text, ids) in enumerate(prompts):
        g = golden_for_prompt(model, ids, n_greedy, stop_id)
        for name, t in g.items():
            tensors[f"p{i}.{name}"] = t
    meta = {
        "format": "1",
        "prompts": json.dumps([t for t, _ in prompts], ensure_ascii=False),
        "dtype": "float32",
        "transformers": transformers.__version__,
    }
    save_file(tensors, path, metadata=meta)
