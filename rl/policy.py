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
    """Wraps an HF causal LM (optionally a peft LoRA model). Its forward runs through `self.root` (a module
    around the model), the unit FSDP2 shards last when the learner is sharded: its forward hooks gather the
    embeddings, final norm and output layer, and reduce their gradients (`rl.distributed`)."""

    def __init__(self, model: torch.nn.Module, tokenizer, is_lora: bool):
        self.model, self.tokenizer, self.is_lora = model, tokenizer, is_lora
        self.root = _CompletionLogits(model)

    def completion_logits(self, inputs: ModelInputs, where: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [N, T, V] at the positions predicting each completion token of a collated micro-batch's inputs
        (`rl.batching.ModelInputs`: `flat_positions` [N, T] index the flattened [B·S] hidden states). In the shared
        layout (`inputs.prefix` set) each distinct prompt first runs once and hands its keys/values (gathered per
        row, differentiably) to the completions' pass.

        where: optional bool [N, T]; then only those positions go through the output layer and the result is
        [M, V], M = where.sum(), in row-major order (`flat_positions[where]`): padding and tokens without loss
        never pay for the [*, V] projection."""
        return self.root(inputs, where)

    def _base(self) -> torch.nn.Module:
        return self.model.get_base_model() if self.is_lora else self.model

    def merged_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF name, tensor) for every weight of the plain model; LoRA deltas are added functionally
        (W + B·A·scale), never merged in place, so bf16 merge/unmerge drift cannot creep into the base. Sharded
        (`rl.distributed`), one FSDP unit is gathered at a time (in the compute dtype) and every rank must iterate
        to the end; each tensor is valid until the next unit's: copy what you keep."""
        from rl.distributed import gathered_parameters

        base = self._base()
        modules = dict(base.named_modules()) if self.is_lora else {}
        for _, params in gathered_parameters(base, root=self.root):
            for name, param in params.items():
                if ".lora_" in name:
                    continue
                if name.endswith(".base_layer.weight"):
                    owner = modules[name[: -len(".base_layer.weight")]]
                    delta = sum(owner.get_delta_weight(a) for a in owner.active_adapters)
                    yield name.replace(".base_layer.", "."), param + delta
                else:
                    yield name.replace(".base_layer.", "."), param

    def weight_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(HF name, full shape) of what `merged_weights` yields, in its order, without gathering anything."""
        from rl.distributed import units_and_names

        base = self._base()
        params = dict(base.named_parameters())
        return [(name.replace(".base_layer.", "."), tuple(params[name].shape))
                for _, names in units_and_names(base, root=self.root) for name in names if ".lora_" not in name]

    @torch.no_grad()
    def save_pretrained(self, path: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """An HF directory loadable by `AutoModelForCausalLM` and servable by vLLM (merged for LoRA); for LoRA the
        adapter also goes to `path/adapter` (what resuming loads). `state_dict`: the model's full state (names as
        `self.model.state_dict()`), for a sharded model whose parameters are not whole in this process."""
        path.mkdir(parents=True, exist_ok=True)
        if self.is_lora:
            self.model.save_pretrained(path / "adapter", state_dict=state_dict)
            merged = (_merge_lora(state_dict, self.model) if state_dict is not None
                      else {n: t.detach().clone() for n, t in self.merged_weights()})
            self._base().save_pretrained(path, state_dict=merged)
        else:
            self.model.save_pretrained(path, state_dict=state_dict)
        self.tokenizer.save_pretrained(path)


class _CompletionLogits(torch.nn.Module):
    """The model's forward as the learner uses it (`Policy.completion_logits`), as one module so that a sharded
    model has a root unit around everything it runs."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        # held outside the module tree (plain attributes would register them a second time under other names)
        self._parts = (base.get_decoder(), base.get_output_embeddings())

    @property
    def _trunk(self) -> torch.nn.Module:
        return self._parts[0]

    @property
    def _head(self) -> torch.nn.Module:
        return self._parts[1]

    def forward(self, inputs: ModelInputs, where: torch.Tensor | None = None) -> torch.Tensor:
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


def _merge_lora(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The plain model's weights (base names) from a peft model's full state dict: W + Σ_adapters B·A·scale for
    every LoRA-wrapped linear layer."""
    from peft.tuners.lora import LoraLayer

    prefix = "base_model.model."
    modules = dict(model.get_base_model().named_modules())
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        name = name.removeprefix(prefix)
        if ".lora_" in name:
            continue
        if name.endswith(".base_layer.weight"):
            owner_name = name[: -len(".base_layer.weight")]
            owner = modules[owner_name]
            assert isinstance(owner, LoraLayer)
            tensor = tensor.clone()
            for a in owner.active_adapters:
                lora_a = state_dict[f"{prefix}{owner_name}.lora_A.{a}.weight"].to(tensor.dtype)
                lora_b = state_dict[f"{prefix}{owner_name}.lora_B.{a}.weight"].to(tensor.dtype)
                tensor += (lora_b @ lora_a) * owner.scaling[a]
        out[name.replace(".base_layer.", ".")] = tensor
    return out


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
