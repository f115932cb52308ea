"""The in-house MoE: a Mixtral-architecture checkpoint made from the dense SmolLM2 by sparse upcycling.

Every expert starts as a copy of the dense MLP and a new router picks the top-k experts per token. Mixtral
renormalises the top-k routing weights to sum to one, so with identical experts the MoE computes exactly the
dense model's function whatever the router says: the pure upcycle is the dense model, and a short continued
training run (with the router's load-balancing loss) is what lets the experts drift apart.
"""

from __future__ import annotations

import hashlib
import inspect
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .gguf import hub_offline
from .store import BuildError, BuildResult, Log, checkpoint_build, marker_read

# Bump when the upcycling recipe changes: built MoE checkpoints are then rebuilt.
RECIPE_VERSION = 1
# The router starts small and random: an all-zero router ties every score, so top-k always picks the same
# experts and the others never see a gradient.
ROUTER_INIT_STD = 0.01
TRAIN_SEQ_LEN = 128
TRAIN_BATCH_SIZE = 4
TRAIN_LEARNING_RATE = 2e-5
# Text that ships with Python itself, so training needs nothing downloaded.
TRAINING_MODULES = (
    "argparse", "bisect", "collections", "contextlib", "dataclasses", "decimal", "difflib", "fractions",
    "functools", "heapq", "itertools", "json", "logging", "pathlib", "random", "statistics", "string", "textwrap",
)  # fmt: skip


@dataclass(frozen=True)
class MoeRecipe:
    experts: int = 4
    top_k: int = 2
    train_steps: int = 0
    seed: int = 0

    def check(self) -> None:
        if self.experts < 2:
            raise BuildError("An MoE needs at least 2 experts.")
        if not 1 <= self.top_k <= self.experts:
            raise BuildError(f"top-k must be between 1 and the number of experts ({self.experts}).")
        if self.train_steps < 0:
            raise BuildError("The number of training steps cannot be negative.")


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    active: int  # parameters used for one token: everything but the experts the router does not pick
    experts: int  # 0 for a dense model
    top_k: int

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    def describe(self) -> str:
        if not self.is_moe:
            return f"dense, {self.total / 1e6:.1f}M parameters"
        return (
            f"MoE, {self.experts} experts, top-{self.top_k}: {self.total / 1e6:.1f}M parameters in total, "
            f"{self.active / 1e6:.1f}M active per token"
        )


def parameter_counts(model: Any) -> ParameterCounts:
    """Total and per-token active parameters of a loaded causal LM (active equals total for a dense model)."""
    total = sum(p.numel() for p in model.parameters())
    config = model.config
    experts = getattr(config, "num_local_experts", None) or 0
    top_k = getattr(config, "num_experts_per_tok", None) or 0
    if not experts:
        return ParameterCounts(total=total, active=total, experts=0, top_k=0)
    expert_params = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
    active = total - expert_params + expert_params * top_k // experts
    return ParameterCounts(total=total, active=active, experts=experts, top_k=top_k)


def moe_config_from_dense(dense: Any, recipe: MoeRecipe) -> Any:
    """A MixtralConfig that reproduces a Llama config's attention, norms, rope and embeddings exactly."""
    from transformers import MixtralConfig

    if dense.model_type != "llama":
        raise BuildError(f"Upcycling needs a Llama-architecture dense model, not {dense.model_type}.")
    if getattr(dense, "attention_bias", False) or getattr(dense, "mlp_bias", False):
        raise BuildError("Mixtral has no attention or MLP biases; this dense model uses them.")
    return MixtralConfig(
        vocab_size=dense.vocab_size,
        hidden_size=dense.hidden_size,
        intermediate_size=dense.intermediate_size,
        num_hidden_layers=dense.num_hidden_layers,
        num_attention_heads=dense.num_attention_heads,
        num_key_value_heads=dense.num_key_value_heads,
        head_dim=getattr(dense, "head_dim", None) or dense.hidden_size // dense.num_attention_heads,
        hidden_act=dense.hidden_act,
        max_position_embeddings=dense.max_position_embeddings,
        initializer_range=dense.initializer_range,
        rms_norm_eps=dense.rms_norm_eps,
        pad_token_id=dense.pad_token_id,
        bos_token_id=dense.bos_token_id,
        eos_token_id=dense.eos_token_id,
        tie_word_embeddings=dense.tie_word_embeddings,
        rope_parameters=dict(dense.rope_parameters),
        sliding_window=None,
        attention_dropout=dense.attention_dropout,
        num_local_experts=recipe.experts,
        num_experts_per_tok=recipe.top_k,
        output_router_logits=False,
        router_aux_loss_coef=0.01,
        router_jitter_noise=0.0,
    )


def upcycle(dense_model: Any, recipe: MoeRecipe, *, log: Log = print) -> Any:
    """A MixtralForCausalLM whose experts are copies of `dense_model`'s MLPs, with a fresh small random router."""
    import torch
    from tqdm import tqdm
    from transformers import MixtralForCausalLM

    config = moe_config_from_dense(dense_model.config, recipe)
    torch.manual_seed(recipe.seed)
    moe = MixtralForCausalLM(config).to(torch.float32)
    dense_state = dense_model.state_dict()
    moe_state: dict[str, Any] = {}
    for name, tensor in dense_state.items():
        if ".mlp." not in name:
            moe_state[name] = tensor
    generator = torch.Generator().manual_seed(recipe.seed)
    for layer in tqdm(range(config.num_hidden_layers), desc="Upcycling layers", unit="layer"):
        prefix = f"model.layers.{layer}.mlp"
        gate = dense_state[f"{prefix}.gate_proj.weight"]
        up = dense_state[f"{prefix}.up_proj.weight"]
        down = dense_state[f"{prefix}.down_proj.weight"]
        # Mixtral keeps the experts fused: gate_up_proj is [E, 2*I, H] (gate rows first), down_proj [E, H, I].
        moe_state[f"{prefix}.experts.gate_up_proj"] = torch.cat([gate, up], dim=0).unsqueeze(0).repeat(
            recipe.experts, 1, 1
        )
        moe_state[f"{prefix}.experts.down_proj"] = down.unsqueeze(0).repeat(recipe.experts, 1, 1)
        moe_state[f"{prefix}.gate.weight"] = (
            torch.randn(recipe.experts, config.hidden_size, generator=generator) * ROUTER_INIT_STD
        )
    loaded = moe.load_state_dict(moe_state, strict=False)
    missing = set(loaded.missing_keys)
    if config.tie_word_embeddings:
        missing.discard("lm_head.weight")
    if missing or loaded.unexpected_keys:
        raise BuildError(f"Upcycling left weights unmapped: {sorted(missing)[:5]} {loaded.unexpected_keys[:5]}")
    moe.tie_weights()
    moe.generation_config = dense_model.generation_config
    return moe.eval()


def training_text() -> str:
    """Docstrings of a fixed set of standard-library modules: English prose that ships with Python."""
    import importlib

    pieces: list[str] = []
    for module_name in TRAINING_MODULES:
        module = importlib.import_module(module_name)
        docs = [inspect.getdoc(module)]
        for name, member in sorted(vars(module).items()):
            if name.startswith("_") or getattr(member, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(member) or inspect.isfunction(member):
                docs.append(inspect.getdoc(member))
        pieces.extend(doc for doc in docs if doc)
    return "\n\n".join(pieces)


def train(moe: Any, tokenizer: Any, recipe: MoeRecipe, *, text: str, log: Log = print) -> dict[str, float]:
    """Continue training the upcycled model for `recipe.train_steps` steps with the load-balancing loss."""
    import torch
    from tqdm import tqdm

    ids = tokenizer(text, return_tensors="pt")["input_ids"][0]
    windows = ids[: len(ids) // TRAIN_SEQ_LEN * TRAIN_SEQ_LEN].view(-1, TRAIN_SEQ_LEN)
    if len(windows) < TRAIN_BATCH_SIZE:
        raise BuildError("The training text is too short for one batch.")
    order = random.Random(recipe.seed)
    torch.manual_seed(recipe.seed)
    optimizer = torch.optim.AdamW(moe.parameters(), lr=TRAIN_LEARNING_RATE, weight_decay=0.0)
    moe.train()
    last: dict[str, float] = {}
    progress = tqdm(range(recipe.train_steps), desc="Training the MoE", unit="step")
    for _ in progress:
        batch = windows[order.sample(range(len(windows)), TRAIN_BATCH_SIZE)]
        out = moe(input_ids=batch, labels=batch, output_router_logits=True)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(moe.parameters(), 1.0)
        optimizer.step()
        last = {"loss": out.loss.item(), "aux_loss": out.aux_loss.item()}
        progress.set_postfix(loss=f"{last['loss']:.3f}", aux=f"{last['aux_loss']:.3f}")
    moe.eval()
    return last


def inhouse_moe_source(dense_dir: Path, recipe: MoeRecipe) -> dict[str, Any]:
    dense_marker = marker_read(dense_dir)
    if dense_marker is None:
        raise BuildError(f"The dense model at {dense_dir} is not built yet.")
    source: dict[str, Any] = {
        "kind": "upcycle",
        "recipe": RECIPE_VERSION,
        "dense": dense_marker["source"],
        "experts": recipe.experts,
        "top_k": recipe.top_k,
        "train_steps": recipe.train_steps,
        "seed": recipe.seed,
    }
    if recipe.train_steps:
        text = training_text()
        source["training_text_sha256"] = hashlib.sha256(text.encode()).hexdigest()
        source["training"] = {"seq_len": TRAIN_SEQ_LEN, "batch": TRAIN_BATCH_SIZE, "lr": TRAIN_LEARNING_RATE}
    return source


def inhouse_moe_build(
    target: Path, *, dense_dir: Path, recipe: MoeRecipe = MoeRecipe(), force: bool = False, log: Log = print
) -> BuildResult:
    """Upcycle the dense checkpoint at `dense_dir` into a Mixtral checkpoint at `target` (once per source)."""
    recipe.check()
    source = inhouse_moe_source(Path(dense_dir), recipe)

    def build(out: Path) -> dict[str, Any]:
        hub_offline()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log(f"Upcycling {dense_dir.name} into {recipe.experts} experts, top-{recipe.top_k}")
        dense = AutoModelForCausalLM.from_pretrained(dense_dir, dtype=torch.float32, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(dense_dir, local_files_only=True)
        moe = upcycle(dense, recipe, log=log)
        del dense
        facts: dict[str, Any] = {}
        if recipe.train_steps:
            facts["training"] = train(moe, tokenizer, recipe, text=training_text(), log=log)
        counts = parameter_counts(moe)
        log(f"Writing the checkpoint: {counts.describe()}")
        moe.save_pretrained(out)
        tokenizer.save_pretrained(out)
        facts.update(
            architecture=type(moe).__name__,
            total_parameters=counts.total,
            active_parameters=counts.active,
            experts=counts.experts,
            top_k=counts.top_k,
        )
        return facts

    return checkpoint_build(target, source, build, force=force, log=log)


def inhouse_moe_ensure(target: Path, *, dense_dir: Path, log: Log = print) -> BuildResult:
    """Reuse whatever complete MoE build is at `target` if it came from this dense model, else build the default.

    An operator may have built the MoE with their own recipe (`build_inhouse_moe --experts 8`); registering
    the defaults must not undo that, but a changed dense source still rebuilds.
    """
    marker = marker_read(target)
    dense_marker = marker_read(dense_dir)
    if marker is not None and dense_marker is not None:
        built = marker["source"]
        if built.get("kind") == "upcycle" and built.get("recipe") == RECIPE_VERSION:
            if built.get("dense") == dense_marker["source"]:
                recipe = MoeRecipe(built["experts"], built["top_k"], built["train_steps"], built["seed"])
                return inhouse_moe_build(target, dense_dir=dense_dir, recipe=recipe, log=log)
    return inhouse_moe_build(target, dense_dir=dense_dir, log=log)
