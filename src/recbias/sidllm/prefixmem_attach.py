"""Attach a :class:`~recbias.sidllm.prefixmem.PrefixMem` encoder to a Hugging Face causal LM,
and save / load it beside the model's weights.

    pm = attach_prefixmem(model, level_of, code_of, cfg)          # after resize and LoRA
    model.save_pretrained(out); save_prefixmem(model, out)         # HF weights stay loadable
    model = AutoModelForCausalLM.from_pretrained(out); load_prefixmem(model, out)

The encoder becomes the child ``prefixmem`` of the input embedding module, and a forward hook on
that module adds its term. The embedding keeps its class, its ``weight`` and its parameter name,
so weight tying, ``resize_token_embeddings`` (in place in transformers 5) and PEFT are unaffected;
the training loop sees the encoder's parameters (and its ``lr_multiplier``) among the model's,
and training checkpoints (``weights.pt``, by parameter name) hold them. ``save_pretrained`` skips
them (``_keys_to_ignore_on_save``): they go to ``prefixmem.safetensors`` + ``prefixmem.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from recbias.config import from_dict
from recbias.errors import ModelError
from recbias.sidllm.prefixmem import PrefixMem, PrefixMemConfig

WEIGHTS_FILE = "prefixmem.safetensors"
CONFIG_FILE = "prefixmem.json"
CHILD = "prefixmem"


def attach_prefixmem(
    model: nn.Module,
    level_of: Tensor,
    code_of: Tensor,
    cfg: PrefixMemConfig,
    pretrained: PrefixMem | None = None,
) -> PrefixMem:
    """Add a new encoder to ``model``'s input embeddings; ``pretrained`` gives its tables (with a
    fresh ``W_out``). On the embedding's device and dtype. Returns the encoder."""
    embedding = _input_embedding(model)
    if find_prefixmem(model) is not None:
        raise ModelError("the model already has a PrefixMem encoder (detach_prefixmem first)")
    weight = embedding.weight
    if level_of.numel() > weight.shape[0]:
        raise ModelError(
            f"level_of covers {level_of.numel()} tokens but the embedding has {weight.shape[0]} "
            "rows: add the SID tokens (resize_token_embeddings) before attaching"
        )
    encoder = PrefixMem(cfg, level_of, code_of, int(weight.shape[1]))
    if pretrained is not None:
        encoder.load_tables(pretrained)
    encoder.to(device=weight.device, dtype=weight.dtype)
    embedding.add_module(CHILD, encoder)
    embedding.register_forward_hook(_add_memory, with_kwargs=True)
    _skip_on_save(model, embedding, encoder)
    return encoder


def find_prefixmem(model: nn.Module) -> PrefixMem | None:
    found = getattr(_input_embedding(model), CHILD, None)
    return found if isinstance(found, PrefixMem) else None


def detach_prefixmem(model: nn.Module) -> PrefixMem | None:
    """Remove the encoder (and its hook) from ``model``; returns it, or None if there was none."""
    embedding = _input_embedding(model)
    encoder = find_prefixmem(model)
    if encoder is None:
        return None
    del embedding._modules[CHILD]
    for key, hook in list(embedding._forward_hooks.items()):
        if hook is _add_memory:
            del embedding._forward_hooks[key]
            embedding._forward_hooks_with_kwargs.pop(key, None)
    return encoder


def _add_memory(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Tensor) -> Tensor:
    encoder = getattr(module, CHILD, None)
    if encoder is None:  # detached from a copy that kept the hook
        return output
    ids = args[0] if args else kwargs.get("input", kwargs.get("input_ids"))
    return encoder(ids, output)


def _input_embedding(model: nn.Module) -> nn.Module:
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if get is not None else None
    if embedding is None or not isinstance(getattr(embedding, "weight", None), Tensor):
        raise ModelError(f"{type(model).__name__} has no input embedding with a weight matrix")
    return embedding


def _skip_on_save(model: nn.Module, embedding: nn.Module, encoder: PrefixMem) -> None:
    """Keep the encoder out of every enclosing HF model's ``save_pretrained`` (its keys would be
    unexpected there); it is saved by :func:`save_prefixmem`."""
    from transformers import PreTrainedModel

    local = list(encoder.state_dict())
    for owner in model.modules():
        if not isinstance(owner, PreTrainedModel):
            continue
        where = next((n for n, m in owner.named_modules() if m is embedding), None)
        if where is None:
            continue
        keys = {f"{where}.{CHILD}.{k}" if where else f"{CHILD}.{k}" for k in local}
        owner._keys_to_ignore_on_save = set(owner._keys_to_ignore_on_save or ()) | keys


def save_prefixmem(
    model: nn.Module, directory: Path, full_state: Mapping[str, Tensor] | None = None
) -> bool:
    """Write ``prefixmem.safetensors`` and ``prefixmem.json`` to ``directory`` (if the model has
    an encoder); returns whether it did.

    ``full_state``: the model's gathered state dict when its own tensors are sharded (FSDP,
    :func:`recbias.train.checkpoint.full_model_state`); the encoder's entries are taken from it.
    """
    encoder = find_prefixmem(model)
    if encoder is None:
        return False
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if full_state is None:
        own = encoder.state_dict()
    else:
        where = next(n for n, m in model.named_modules() if m is encoder) + "."
        own = {k[len(where) :]: v for k, v in full_state.items() if k.startswith(where)}
        if own.keys() != encoder.state_dict().keys():
            raise RuntimeError(f"the gathered state lacks the PrefixMem entries under {where}")
    state = {k: v.detach().contiguous().cpu() for k, v in own.items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    meta = {"config": asdict(encoder.cfg), "d_model": encoder.d_model}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return True


def load_prefixmem(model: nn.Module, directory: Path) -> PrefixMem | None:
    """Attach the encoder saved in ``directory`` to ``model``; None when there is none there."""
    directory = Path(directory)
    if not (directory / WEIGHTS_FILE).exists():
        return None
    if not (directory / CONFIG_FILE).exists():
        raise ModelError(f"'{directory / WEIGHTS_FILE}' has no '{CONFIG_FILE}' beside it")
    meta = json.loads((directory / CONFIG_FILE).read_text())
    cfg = from_dict(PrefixMemConfig, meta["config"], prefix="prefixmem")
    state = load_file(str(directory / WEIGHTS_FILE))
    encoder = attach_prefixmem(model, state["level_of"], state["code_of"], cfg)
    if encoder.d_model != meta["d_model"]:
        detach_prefixmem(model)
        raise ModelError(
            f"'{directory}': the saved PrefixMem projects to {meta['d_model']} dims, the model "
            f"has {encoder.d_model}"
        )
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        detach_prefixmem(model)
        raise ModelError(f"'{directory / WEIGHTS_FILE}' does not fit its config: {exc}") from None
    return encoder


def prefixmem_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    """The encoder's parameters (empty without one)."""
    encoder = find_prefixmem(model)
    return [] if encoder is None else list(encoder.parameters())
