#!/usr/bin/env python3
"""Run llama.cpp's convert_hf_to_gguf.py on a moe-edge checkpoint.

The stock converter stops on our checkpoints for one reason, about metadata,
not weights: our tokenizer is a custom byte-level BPE, so its pre-tokenizer
hash is not in llama.cpp's table and the converter raises "BPE pre-tokenizer
was not recognized". We register the unknown hash as `--pre` (default "qwen2",
the Qwen regex split, which is what our tokenizer.json's pre-tokenizer is
closest to). llama-bench never tokenises text, so this does not change the
speed figures; llama.cpp's tokenisation of real text may differ from ours.

Usage (from a venv with torch, transformers, sentencepiece and llama.cpp's gguf-py):

    python scripts/convert-hf-to-gguf.py --llama-cpp LLAMA_CPP_DIR [--pre qwen2] \\
        HF_DIR --outtype f32 --outfile OUT.gguf

Every argument after the wrapper's own is passed to convert_hf_to_gguf.py.
"""

import argparse
import logging
import sys
from pathlib import Path

def main() -> None:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--llama-cpp", required=True, type=Path,
                    help="llama.cpp source tree (the sdist's vendor/llama.cpp)")
    ap.add_argument("--pre", default="qwen2",
                    help="tokenizer.ggml.pre to write for an unrecognised BPE pre-tokenizer")
    ours, rest = ap.parse_known_args()
    script = ours.llama_cpp / "convert_hf_to_gguf.py"
    if not script.is_file():
        sys.exit(f"error: {script} not found (--llama-cpp must be the llama.cpp source tree)")
    sys.path.insert(0, str(ours.llama_cpp))
    sys.argv = [str(script)] + rest

    import convert_hf_to_gguf as conv  # noqa: E402  (needs the sys.path above)
    from conversion import base  # noqa: E402

    log = logging.getLogger("moe-edge-convert")
    stock_pre = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return stock_pre(self, tokenizer)
        except NotImplementedError:
            log.warning("unrecognised BPE pre-tokenizer: writing tokenizer.ggml.pre=%r", ours.pre)
            return ours.pre

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre

    conv.main()


if __name__ == "__main__":
    main()
