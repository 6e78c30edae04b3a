"""A student from a teacher by dropping decoder layers: `python -m distill.shrink SRC OUT --layers K [--keep-ends M]`.

Keeps K of the teacher's N decoder layers (the embedding and output layers stay as they are): by default evenly
spaced, always including the first and the last; with `--keep-ends M` the first M and the last M layers all stay
and the N − K dropped ones are spread evenly over the middle (the first and last layers matter most; on
SmolLM2-135M keeping 24 of 30 this way loses less than the evenly spaced choice, see examples/distill/README.md).
It writes an ordinary HF checkpoint with the teacher's
tokenizer, so the two share a vocabulary by construction. Layer dropping is the classic way to initialise a
distillation student (DistilBERT kept every other layer); the smaller model starts damaged and distillation
repairs it. Works for decoder-only models that keep their layers in `model.model.layers` (Llama, Qwen2/3, Mistral).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def kept_layers(num_layers: int, keep: int, keep_ends: int = 0) -> list[int]:
    """`keep` indices out of range(num_layers), increasing. Pure. keep_ends = 0: evenly spaced, first and last
    included; keep_ends = M: the first M and last M layers, and the middle ones minus num_layers − keep dropped
    at evenly spaced positions of the middle."""
    if not 1 <= keep <= num_layers:
        raise ValueError(f"--layers {keep}: must be between 1 and the model's {num_layers} layers")
    if keep_ends:
        middle, drop = num_layers - 2 * keep_ends, num_layers - keep
        if keep_ends < 0 or drop > middle:
            raise ValueError(f"--keep-ends {keep_ends}: dropping {drop} of {num_layers} layers needs {drop} middle "
                             f"layers, and keeping {keep_ends} at each end leaves {max(middle, 0)}")
        # positions (j + 1/2)·middle/drop are ≥ 1 apart, so their floors are distinct
        dropped = {keep_ends + int((j + 0.5) * middle / drop) for j in range(drop)}
        return [i for i in range(num_layers) if i not in dropped]
    if keep == 1:
        return [num_layers - 1]
    return sorted({round(i * (num_layers - 1) / (keep - 1)) for i in range(keep)})


def shrink(src: str, out: str | Path, keep: int, keep_ends: int = 0) -> Path:
    """Write `src` with only `kept_layers(N, keep, keep_ends)` of its decoder layers into `out`; returns `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl.models import resolve_model_path

    path = resolve_model_path(src)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    layers = model.model.layers
    chosen = kept_layers(len(layers), keep, keep_ends)
    model.model.layers = torch.nn.ModuleList(layers[i] for i in chosen)
    for new_index, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = new_index  # the KV cache is indexed by position in the stack
    config = model.config
    config.num_hidden_layers = len(chosen)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in chosen]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m distill.shrink", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="teacher: hub id, local directory, checkpoint or alias (smollm2-135m-instruct)")
    parser.add_argument("out", help="directory for the student")
    parser.add_argument("--layers", type=int, required=True, help="decoder layers to keep")
    parser.add_argument("--keep-ends", type=int, default=0, metavar="M",
                        help="keep the first M and last M layers, drop from the middle (default 0: evenly spaced)")
    args = parser.parse_args(argv)
    try:
        out = shrink(args.src, args.out, args.layers, args.keep_ends)
    except ValueError as e:
        parser.error(str(e))
    print(out)


if __name__ == "__main__":
    main()
