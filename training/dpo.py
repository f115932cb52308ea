"""One DPO run with TRL's DPOTrainer: a local checkpoint and preference pairs in, a merged checkpoint out.

LoRA adapters (PEFT) on the attention projections train, and are merged into the weights at the end: the
reference model is then the same weights with the adapters off, so a run holds one copy of the model and no
optimizer state for its 370M parameters, which is what lets it run on a CPU. Offline: nothing is downloaded
(the hub is switched off before TRL is imported) and TRL reports to nothing.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Log = Callable[[str], None]


@dataclass(frozen=True)
class DpoSettings:
    steps: int = 40
    batch_size: int = 2
    learning_rate: float = 5e-5
    beta: float = 0.1
    max_length: int = 384
    lora_rank: int = 16
    lora_alpha: int = 32
    seed: int = 0
    device: str = "auto"  # "cpu", "cuda" or "auto" (a GPU when there is one)

    def check(self) -> list[str]:
        errors = []
        if self.steps < 1:
            errors.append("steps must be at least 1")
        if self.batch_size < 1:
            errors.append("the batch size must be at least 1")
        if not 0 < self.learning_rate < 1:
            errors.append("the learning rate must be between 0 and 1")
        if self.beta <= 0:
            errors.append("beta must be positive")
        if self.device not in ("auto", "cpu", "cuda"):
            errors.append("the device is one of auto, cpu, cuda")
        return errors

    def as_recipe(self) -> dict[str, Any]:
        return {"trainer": "trl.DPOTrainer", "adapter": "LoRA on q/k/v/o, merged", **asdict(self)}


def _offline() -> None:
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[name] = "1"
    os.environ.setdefault("WANDB_DISABLED", "true")


class _LogCallback:
    """Passes the trainer's per-step logs (loss, reward margin) to `log`."""

    def __new__(cls, log: Log) -> Any:
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
                if logs and "loss" in logs:
                    margin = logs.get("rewards/margins")
                    log(
                        f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4f}"
                        + (f", reward margin {margin:.4f}" if margin is not None else "")
                    )

        return Callback()


def dpo_train(
    *, checkpoint: Path, pairs: list[dict[str, Any]], out: Path, settings: DpoSettings, log: Log = print
) -> dict[str, Any]:
    """Train `checkpoint` on `pairs` (TRL conversational records) and write the merged model to `out`.

    Returns facts for the build marker: the DPO loss on the pairs before and after (before is ln 2 by
    construction: the policy starts equal to the reference), the router's aux loss beside it for an MoE, the
    steps run, the device.
    """
    _offline()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    use_cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but this machine has no CUDA GPU.")
    log(f"Loading {checkpoint.name} on {'a GPU' if use_cuda else 'the CPU'}")
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    dataset = Dataset.from_list(pairs)
    with tempfile.TemporaryDirectory(prefix="arena-dpo-") as scratch:
        args = DPOConfig(
            output_dir=scratch,
            max_steps=settings.steps,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="constant",
            beta=settings.beta,
            max_length=settings.max_length,
            seed=settings.seed,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=not use_cuda,
            bf16=False,
            fp16=False,
            gradient_checkpointing=False,
            dataloader_num_workers=0,
            disable_tqdm=False,
        )
        lora = LoraConfig(
            r=settings.lora_rank,
            lora_alpha=settings.lora_alpha,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM",
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            eval_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[_LogCallback(log)],
        )
        # For an MoE, TRL adds the router's load-balancing loss (times the model's coefficient) to the DPO loss,
        # which keeps the experts in use; the DPO part is reported on its own.
        aux_coef = trainer.router_aux_loss_coef if getattr(trainer, "aux_loss_enabled", False) else 0.0

        def losses() -> tuple[float, float]:
            metrics = trainer.evaluate()
            aux = float(metrics.get("eval_aux_loss", 0.0))
            return float(metrics["eval_loss"]) - aux_coef * aux, aux

        before, aux_before = losses()
        log(f"DPO loss on the {len(pairs)} pairs before training: {before:.4f} (router aux loss {aux_before:.4f})")
        trainer.train()
        after, aux_after = losses()
        log(f"DPO loss on the {len(pairs)} pairs after {settings.steps} steps: {after:.4f} (router aux loss {aux_after:.4f})")
        merged = trainer.model.merge_and_unload().to("cpu")
    if not math.isfinite(after):
        raise RuntimeError("DPO diverged: the loss after training is not a number.")
    merged.save_pretrained(out, save_original_format=False)  # the experts fused, as models_hub's builder saves them
    tokenizer.save_pretrained(out)
    return {
        "dpo_loss_before": round(before, 6),
        "dpo_loss_after": round(after, 6),
        "router_aux_loss_before": round(aux_before, 6),
        "router_aux_loss_after": round(aux_after, 6),
        "router_aux_loss_coef": aux_coef,
        "steps": settings.steps,
        "pairs": len(pairs),
        "device": "cuda" if use_cuda else "cpu",
    }
