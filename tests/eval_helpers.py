"""Helpers of test_eval.py and test_datatools.py: rewards whose outcome a test controls, and a tiny model that
closes its think blocks sometimes."""


def solved_first(prompts, completions, solved, row_id, **_):
    """1.0 for the first `solved` samples of each row in the call, 0.0 for the rest: a row with `solved = c`
    has exactly c correct of its N samples (the samples of a row arrive together, in sampling order)."""
    seen: dict = {}
    out = []
    for limit, key in zip(solved, row_id):
        seen[key] = seen.get(key, 0) + 1
        out.append(1.0 if seen[key] <= limit else 0.0)
    return out


def even_length(prompts, completions, **_):
    """1.0 when the completion text has an even number of characters: about half the samples, from the text."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [1.0 if len(t) % 2 == 0 else 0.0 for t in texts]


def think_model(tiny_model, out, think_end_scale: float = 25.0):
    """The tiny model with its `</think>` embedding row scaled (tied, so its logit too; as in test_budget.py):
    it then closes its thinking at some positions and not at others. The thinking-fusion template is installed
    on the saved tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl.chat import use_thinking_template

    tokenizer = use_thinking_template(AutoTokenizer.from_pretrained(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    with torch.no_grad():
        model.model.embed_tokens.weight[tokenizer.convert_tokens_to_ids("</think>")] *= think_end_scale
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
