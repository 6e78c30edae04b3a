"""Give a model without native thinking single-token `<think>` / `</think>` tags (needed for a thinking budget,
whose `</think>` is a stop id): `python -m rl.think_tokens SRC OUT` (SRC: alias, local dir or hub id).

The tags are added as ordinary (non-special) tokens, so decoding keeps them, as in Qwen3's tokenizer. Each new
embedding row (and output row, when the embeddings are not tied) is the mean of the rows of the pieces the tag
was split into before, so the model first reads `</think>` much as it read the text `</think>`. The
thinking-fusion chat template (`rl.chat.THINKING_FUSION_TEMPLATE`) is installed on the saved tokenizer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TAGS = ("<think>", "</think>")


def add_think_tokens(src: str, out: str | Path, dtype: str = "bfloat16") -> Path:
    """Write SRC with single-token think tags (and the fusion template) to OUT; returns OUT."""
    import torch
    from tokenizers import AddedToken
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl.chat import use_thinking_template
    from rl.models import resolve_model_path

    path = resolve_model_path(src)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    pieces = {tag: tokenizer.encode(tag, add_special_tokens=False) for tag in TAGS}
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    with torch.no_grad():
        for tag, ids in pieces.items():
            new = tokenizer.convert_tokens_to_ids(tag)
            if len(ids) == 1 and ids[0] == new:
                continue  # already a single token
            tables = [model.get_input_embeddings().weight] + ([] if tied else [model.get_output_embeddings().weight])
            for table in tables:
                table[new] = table[ids].float().mean(0).to(table.dtype)
    use_thinking_template(tokenizer)
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rl.think_tokens", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="model alias, local directory or hub id")
    parser.add_argument("out", help="output directory")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = parser.parse_args(argv)
    print(add_think_tokens(args.src, args.out, args.dtype))


if __name__ == "__main__":
    main()
