"""A causal LM as the learner sees it: logits only at completion positions, merged weights, HF checkpoints.

Works for full fine-tuning and for LoRA (peft). Logits are computed by the decoder trunk + the output
embedding at the gathered completion positions only, so prompt positions never pay for the [*, V] projection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from rl.batching import ModelInputs, SharedPrefix
from rl.config import ModelConfig


class Policy:
    """Wraps an HF causal LM (optionally a peft LoRA model)."""

    def __init__(self, model: torch.nn.Module, tokenizer, is_lora: bool):
        self.model, self.tokenizer, self.is_lora = model, tokenizer, is_lora
        base = model.get_base_model() if is_lora else model
        self._trunk = base.get_decoder()
        self._head = base.get_output_embeddings()

    def completion_logits(self, inputs: ModelInputs, where: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [N, T, V] at the positions predicting each completion token of a collated micro-batch's inputs
        (`rl.batching.ModelInputs`: `flat_positions` [N, T] index the flattened [B·S] hidden states). In the shared
        layout (`inputs.prefix` set) each distinct prompt first runs once and hands its keys/values (gathered per
        row, differentiably) to the completions' pass.

        where: optional bool [N, T]; then only those positions go through the output layer and the result is
        [M, V], M = where.sum(), in row-major order (`flat_positions[where]`): padding and tokens without loss
        never pay for the [*, V] projection."""
        if inputs.prefix is not None:
            hidden = self._shared_prefix_hidden(inputs, inputs.prefix)
        else:
            hidden = self._trunk(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                                 position_ids=inputs.position_ids, use_cache=False).last_hidden_state
        positions = inputs.flat_positions if where is None else inputs.flat_positions[where]
        return self._head(hidden.reshape(-1, hidden.shape[-1])[positions])

    def _shared_prefix_hidden(self, inputs: ModelInputs, prefix: SharedPrefix) -> torch.Tensor:
        """Hidden states [B, S, H] of the completion rows, each attending to its prompt's cached keys/values."""
        from transformers import DynamicCache

        prefix_ids, input_ids = prefix.input_ids, inputs.input_ids
        # one embedding lookup for both passes: each lookup's backward fills a dense [vocab, hidden] gradient
        embeds = self._trunk.get_input_embeddings()(torch.cat([prefix_ids.flatten(), input_ids.flatten()]))
        prefix_embeds, embeds = embeds.split([prefix_ids.numel(), input_ids.numel()])
        cached = self._trunk(inputs_embeds=prefix_embeds.view(*prefix_ids.shape, -1),
                             attention_mask=prefix.attention_mask,
                             position_ids=torch.arange(prefix_ids.shape[1], device=prefix_ids.device)[None],
                             use_cache=True)
        rows = prefix.row_prefix  # index_select: its backward (index_add) is ~8x faster on CPU than indexing's
        cache = DynamicCache(ddp_cache_data=[(layer.keys.index_select(0, rows), layer.values.index_select(0, rows))
                                             for layer in cached.past_key_values.layers])
        return self._trunk(inputs_embeds=embeds.view(*input_ids.shape, -1), attention_mask=inputs.attention_mask,
                           position_ids=inputs.position_ids, past_key_values=cache, use_cache=True).last_hidden_state

    def merged_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, tensor) for every weight of the plain model; LoRA deltas are added functionally
        (W + B·A·scale), never merged in place, so bf16 merge/unmerge drift cannot creep into the base."""
        if not self.is_lora:
            yield from self.model.named_parameters()
            return
        from peft.tuners.lora import LoraLayer

        base = self.model.get_base_model()
        modules = dict(base.named_modules())
        for name, param in base.named_parameters():
            if ".lora_" in name:
                continue
            if name.endswith(".base_layer.weight"):
                owner = modules[name[: -len(".base_layer.weight")]]
                assert isinstance(owner, LoraLayer)
                delta = sum(owner.get_delta_weight(a) for a in owner.active_adapters)
                yield name.replace(".base_layer.", "."), param + delta
            else:
                yield name.replace(".base_layer.", "."), param

    @torch.no_grad()
    def save_pretrained(self, path: Path) -> None:
        """An HF directory loadable by `AutoModelForCausalLM` and servable by vLLM (merged for LoRA);
        for LoRA the adapter also goes to `path/adapter` (what resuming loads)."""
        path.mkdir(parents=True, exist_ok=True)
        if self.is_lora:
            self.model.save_pretrained(path / "adapter")
            base = self.model.get_base_model()
            base.save_pretrained(path, state_dict={n: t.detach().clone() for n, t in self.merged_weights()})
        else:
            self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


def load_policy(model_path: str, cfg: ModelConfig, device: torch.device, resume_from: str | None) -> Policy:
    """float32 master weights from `model_path` (or the checkpoint `resume_from`), LoRA-wrapped if configured."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl.attention import implementation

    weights_from = resume_from if (resume_from and cfg.lora is None) else model_path
    model = AutoModelForCausalLM.from_pretrained(weights_from, dtype=torch.float32,
                                                 attn_implementation=implementation(device)).to(device)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora is None:
        return Policy(model, tokenizer, is_lora=False)
    from peft import LoraConfig, PeftModel, get_peft_model

    if resume_from:
        model = PeftModel.from_pretrained(model, str(Path(resume_from) / "adapter"), is_trainable=True)
    else:
        lora = cfg.lora
        model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                 target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    return Policy(model, tokenizer, is_lora=True)


def load_reference(model_path: str, dtype: torch.dtype, device: torch.device) -> Policy:
    """The frozen reference policy (the starting model), in the compute dtype, no gradients."""
    from transformers import AutoModelForCausalLM

    from rl.attention import implementation

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype,
                                                 attn_implementation=implementation(device)).to(device).eval()
    model.requires_grad_(False)
    return Policy(model, tokenizer=None, is_lora=False)
