"""Checkpoints as vLLM loads them: the in-house MoE's fused experts written out once as one tensor per expert.

The builder stores a Mixtral's experts fused, one [E, 2I, H] gate_up tensor and one [E, H, I] down tensor per
layer, the layout transformers 5 loads without merging. vLLM's Mixtral reads the hub's original layout, one
w1 (gate), w3 (up), w2 (down) per expert under `block_sparse_moe`. A worker converts such a checkpoint once,
under ARENA_VLLM_DIR/checkpoints/, keyed by the source's path and time, so a rebuilt model is converted again.
Every other checkpoint is served as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

FUSED_SUFFIX = ".mlp.experts.gate_up_proj"
LAYOUT_VERSION = 1  # bump when the conversion changes: converted copies are then written again


def safetensors_names(path: Path) -> list[str]:
    """Tensor names of every safetensors file in a checkpoint directory, from the headers alone."""
    names: list[str] = []
    for file in sorted(path.glob("*.safetensors")):
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            names += [name for name in json.loads(handle.read(length)) if name != "__metadata__"]
    return names


def needs_conversion(path: Path) -> bool:
    config = json.loads((path / "config.json").read_text())
    return config.get("model_type") == "mixtral" and any(n.endswith(FUSED_SUFFIX) for n in safetensors_names(path))


def per_expert(name: str, tensor) -> dict[str, object]:
    """One checkpoint tensor in vLLM's Mixtral layout: fused experts split, the router renamed, the rest as is.

    gate_up_proj [E, 2I, H] holds the gate rows first (w1), then the up rows (w3); down_proj [E, H, I] is w2.
    """
    if name.endswith(FUSED_SUFFIX):
        prefix = name[: -len(FUSED_SUFFIX)] + ".block_sparse_moe.experts"
        half = tensor.shape[1] // 2
        out = {}
        for expert in range(tensor.shape[0]):
            out[f"{prefix}.{expert}.w1.weight"] = tensor[expert, :half].contiguous()
            out[f"{prefix}.{expert}.w3.weight"] = tensor[expert, half:].contiguous()
        return out
    if name.endswith(".mlp.experts.down_proj"):
        prefix = name[: -len(".mlp.experts.down_proj")] + ".block_sparse_moe.experts"
        return {f"{prefix}.{expert}.w2.weight": tensor[expert].contiguous() for expert in range(tensor.shape[0])}
    if name.endswith(".mlp.gate.weight"):
        return {name.replace(".mlp.gate.weight", ".block_sparse_moe.gate.weight"): tensor}
    return {name: tensor}


def convert(source: Path, target: Path) -> None:
    """Write the per-expert copy of `source` into the new directory `target`."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tqdm import tqdm

    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file() and item.suffix != ".safetensors":
            shutil.copy2(item, target / item.name)
    for index, file in enumerate(sorted(source.glob("*.safetensors"))):
        tensors: dict[str, object] = {}
        with safe_open(str(file), framework="pt") as reader:
            for name in tqdm(list(reader.keys()), desc=f"Splitting experts of {source.name}", unit="tensor"):
                tensors.update(per_expert(name, reader.get_tensor(name)))
        save_file(tensors, str(target / f"model-{index:05d}.safetensors"), metadata={"format": "pt"})


def vllm_checkpoint(source: Path) -> Path:
    """The directory vLLM should load for the checkpoint at `source` (converted once if it must be)."""
    if not needs_conversion(source):
        return source
    stamp = f"{source.resolve()}:{(source / 'config.json').stat().st_mtime_ns}:{LAYOUT_VERSION}"
    target = settings.ARENA_VLLM_DIR / "checkpoints" / f"{source.name}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"
    if (target / "config.json").is_file():
        return target
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    logger.info("converting %s to one tensor per expert for vLLM at %s", source, target)
    convert(source, partial)
    try:
        partial.rename(target)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(partial, ignore_errors=True)
    return target
