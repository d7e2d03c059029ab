"""Renders every case of cases.json with every template here through
transformers' own chat-template code (jinja2, the environment
`apply_chat_template` uses), into expected/{template}.{case}.txt.
`src/chat/template.rs` renders the same cases through minijinja and must
match byte for byte (test `real_templates_render_as_transformers_does`).

    python models/templates/render.py      # needs transformers (models/forge/requirements.txt)

Variables: bos_token "" and eos_token "<|im_end|>", as the daemon passes
them (it tokenises the rendered text without adding special tokens).
"""
import json
import pathlib

from transformers.utils.chat_template_utils import _compile_jinja_template

HERE = pathlib.Path(__file__).parent
TEMPLATES = ["qwen3", "qwen2.5", "mistral-tools"]


def hf_message(m):
    """Our TextMessage as a template sees it (src/chat/template.rs jinja_message)."""
    out = {"role": "system" if m["role"] == "developer" else m["role"], "content": m.get("content", "")}
    if "name" in m:
        out["name"] = m["name"]
    if "tool_call_id" in m:
        out["tool_call_id"] = m["tool_call_id"]
    if m.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": c["id"],
                "type": c["type"],
                "function": {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])},
            }
            for c in m["tool_calls"]
        ]
    return out


def main():
    cases = json.loads((HERE / "cases.json").read_text())
    catalogue = json.loads((HERE.parent / "assist-moe" / "tools.json").read_text())["tools"]
    # serde_json (no preserve_order) hands the template objects with sorted keys
    catalogue = json.loads(json.dumps(catalogue, sort_keys=True))
    for name in TEMPLATES:
        tmpl = _compile_jinja_template((HERE / f"{name}.jinja").read_text())
        for case in cases:
            ctx = {
                "messages": [hf_message(m) for m in case["messages"]],
                "add_generation_prompt": True,
                "bos_token": "",
                "eos_token": "<|im_end|>",
            }
            if case["tools"]:
                ctx["tools"] = catalogue
            text = tmpl.render(**ctx)
            (HERE / "expected" / f"{name}.{case['name']}.txt").write_text(text)
            print(name, case["name"], len(text))


if __name__ == "__main__":
    main()
