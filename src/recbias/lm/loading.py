"""Load a causal LM and its tokenizer from a local checkpoint or the embedded default; add LoRA."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from recbias import hardware
from recbias.errors import ModelError

log = logging.getLogger(__name__)


@dataclass
class LoraSettings:
    r: int = field(default=8, metadata={"help": "LoRA rank", "ge": 1})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha"})
    dropout: float = field(default=0.05, metadata={"help": "LoRA dropout", "ge": 0, "lt": 1})
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "v_proj"],
        metadata={"help": "module names to adapt (BIGRec/MSL: q_proj, v_proj)"},
    )


@dataclass
class ModelConfig:
    path: str | None = field(
        default=None,
        metadata={
            "help": "local Hugging Face checkpoint directory or .gguf file (converted once into "
            "the cache); unset = embedded SmolLM2-135M",
            "path": True,
        },
    )
    dtype: Literal["auto", "bf16", "fp32"] = field(
        default="auto",
        metadata={
            "help": "compute dtype: bf16 autocast (weights stay fp32), fp32, or auto = bf16 where "
            "the device runs it fast (CUDA with bf16; a CPU with native bf16, probed), else fp32"
        },
    )
    finetune: Literal["full", "lora"] = field(
        default="full", metadata={"help": "full fine-tuning or LoRA adapters (PEFT)"}
    )
    lora: LoraSettings = field(default_factory=LoraSettings)
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "longest prompt+target in tokens; unset = the model's context size",
            "ge": 1,
        },
    )
    attention: Literal["auto", "eager", "sdpa"] = field(
        default="auto",
        metadata={"help": "attention kernel: auto = eager on CPU (faster there), sdpa on GPU"},
    )
    device: str = field(
        default="auto",
        metadata={"help": "torch device: auto (cuda if available, else cpu), cpu, cuda:0…"},
    )
    adapter: str | None = field(
        default=None,
        metadata={
            "help": "a saved LoRA adapter directory to load on top of the model",
            "path": True,
        },
    )


def resolve_path(cfg: ModelConfig, cache_dir: Path | None = None) -> Path:
    if cfg.path is None:
        from recbias.lm.embedded import ensure_checkpoint

        return ensure_checkpoint(cache_dir)
    path = Path(cfg.path).expanduser()
    if path.suffix == ".gguf":
        from recbias.lm.embedded import gguf_checkpoint

        return gguf_checkpoint(path, cache_dir)
    if not path.is_dir():
        raise ModelError(f"model.path: checkpoint directory '{path}' does not exist")
    if not (path / "config.json").exists():
        raise ModelError(f"model.path: '{path}' has no config.json (not a Hugging Face checkpoint)")
    return path


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"model.path: cannot load a tokenizer from '{path}': {exc}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def attention_for(name: str, device: torch.device) -> str:
    """``auto``: eager attention on CPU (its bf16 matmuls beat the CPU SDPA kernel at prompt
    lengths of a few hundred tokens: about 1.3x faster training here), SDPA on GPU."""
    if name != "auto":
        return name
    return "eager" if device.type == "cpu" else "sdpa"


def load_model(
    path: Path, dtype: torch.dtype = torch.float32, attention: str = "sdpa"
) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, dtype=dtype, attn_implementation=attention
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"model.path: cannot load a causal LM from '{path}': {exc}") from None
    return model


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ModelError(f"model.device: '{name}' is not a torch device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"model.device: '{name}' requested but CUDA is not available")
    return device


def context_size(model: PreTrainedModel, cfg: ModelConfig) -> int:
    native = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)
    return min(native, cfg.max_length) if cfg.max_length else native


def add_lora(
    model: PreTrainedModel,
    lora: LoraSettings,
    trainable_tokens: list[int] | dict[str, list[int]] | None = None,
) -> PreTrainedModel:
    """LoRA adapters on ``lora.target_modules``; ``trainable_tokens`` = embedding rows trained as
    well (PEFT ``trainable_token_indices``, e.g. newly added tokens)."""
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [m for m in lora.target_modules if m not in names]
    if missing:
        raise ModelError(f"model.lora.target_modules: {missing} not found in the model")
    peft_cfg = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
        trainable_token_indices=trainable_tokens,
    )
    return get_peft_model(model, peft_cfg)


def load_adapter(model: PreTrainedModel, adapter_dir: Path, trainable: bool = False):
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").exists():
        raise ModelError(f"adapter directory '{adapter_dir}' has no adapter_config.json")
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)


def resolve_dtype(cfg: ModelConfig, device: torch.device | None = None) -> str:
    """Replace ``cfg.dtype = "auto"`` by what the run's device runs best (``bf16`` or ``fp32``),
    in place, so the resolved config records it; returns it. See :mod:`recbias.hardware`."""
    try:
        dev = device if device is not None else hardware.device_for(cfg.device)
    except RuntimeError:
        raise ModelError(f"model.device: '{cfg.device}' is not a torch device") from None
    cfg.dtype = hardware.resolve_dtype(cfg.dtype, dev)
    asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if asked not in ("no", "", cfg.dtype):  # accelerate launch --mixed_precision
        log.warning(
            "accelerate launch --mixed_precision %s is not read: model.dtype decides (%s here)",
            asked,
            cfg.dtype,
        )
    return cfg.dtype


def autocast(dtype: str, device: torch.device | str = "cpu"):
    """bf16 autocast on CPU or GPU, or a no-op for fp32 (``auto`` is resolved for ``device``)."""
    return hardware.autocast(dtype, device)
