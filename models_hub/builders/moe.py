"""The in-house MoE: a Mixtral-architecture checkpoint made from the dense SmolLM2 by sparse upcycling.

Every expert starts as a copy of the dense MLP and a new router picks the top-k experts per token. Mixtral
renormalises the top-k routing weights to sum to one, so with identical experts the MoE computes exactly the
dense model's function whatever the router says: the pure upcycle is the dense model, and a short continued
training run (with the router's load-balancing loss) is what lets the experts drift apart.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .gguf import hub_offline
from .store import BuildError, BuildResult, Log, checkpoint_build, marker_read
from .training_data import HELD_OUT_CHATS, ChatMessage, HeldOutChat, training_conversations, training_data_sha256

# Bump when the upcycling or training recipe changes: built MoE checkpoints are then rebuilt.
RECIPE_VERSION = 2
# How the checkpoint stores the experts: "fused" is the layout transformers loads without merging.
CHECKPOINT_LAYOUT = "fused"
# The router starts small and random: an all-zero router ties every score, so top-k always picks the same
# experts and the others never see a gradient.
ROUTER_INIT_STD = 0.01
# Only the experts and routers of the top TRAIN_TOP_LAYERS layers train: attention, norms, embeddings and the
# lower layers stay the dense model's, which keeps the model a chat model, and the backward pass stops there,
# which keeps the build within minutes on two CPU cores. The load-balancing loss is weighted up from Mixtral's
# 0.01 so the routers learn to spread tokens while the experts are still near-identical.
TRAIN_TOP_LAYERS = 8
TRAIN_MAX_TOKENS = 128
TRAIN_BATCH_SIZE = 4
TRAIN_LEARNING_RATE = 1e-4
TRAIN_AUX_LOSS_COEF = 0.05
DEFAULT_TRAIN_STEPS = 16
# The system prompt the arena gives the in-house model (defaults._NEUTRAL_SYSTEM_PROMPT): training and the
# held-out evaluation see the same chat the voters' prompts arrive in.
CHAT_SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass(frozen=True)
class MoeRecipe:
    experts: int = 4
    top_k: int = 2
    train_steps: int = DEFAULT_TRAIN_STEPS
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


def chat_examples(tokenizer: Any, conversations: list[list[ChatMessage]], *, max_tokens: int) -> list[Any]:
    """(input_ids, labels) per conversation, labels -100 on the prompt so only the answer is learnt. Shapes [T]."""
    import torch

    examples = []
    for conversation in conversations:
        system: list[ChatMessage] = [{"role": "system", "content": CHAT_SYSTEM_PROMPT}]
        prompt = tokenizer.apply_chat_template(system + conversation[:-1], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template(system + conversation, tokenize=True, return_dict=True)["input_ids"]
        full = list(full)[:max_tokens]
        labels = [-100] * min(len(prompt), len(full)) + full[len(prompt) :]
        if any(label != -100 for label in labels):
            examples.append((torch.tensor(full), torch.tensor(labels)))
    return examples


def _batch(examples: list[Any], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = ids
        labels[row, : len(labs)] = labs
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def train(moe: Any, tokenizer: Any, recipe: MoeRecipe, *, log: Log = print) -> dict[str, float]:
    """Train the top layers' experts and routers for `recipe.train_steps` steps with the load-balancing loss.

    The data is `training_data.training_conversations()`; the loss is the answer tokens' cross-entropy plus the
    router's load-balancing loss (Mixtral's `aux_loss`), which is what makes the router spread tokens and so
    the experts see different tokens and drift apart.
    """
    import torch
    from tqdm import tqdm

    examples = chat_examples(tokenizer, training_conversations(), max_tokens=TRAIN_MAX_TOKENS)
    if len(examples) < TRAIN_BATCH_SIZE:
        raise BuildError("The training data is too small for one batch.")
    order = random.Random(recipe.seed)
    torch.manual_seed(recipe.seed)
    first_trained = moe.config.num_hidden_layers - TRAIN_TOP_LAYERS
    trained_prefixes = tuple(f"model.layers.{layer}.mlp." for layer in range(first_trained, moe.config.num_hidden_layers))
    trainable = []
    for name, parameter in moe.named_parameters():
        parameter.requires_grad_(name.startswith(trained_prefixes))
        if parameter.requires_grad:
            trainable.append(parameter)
    optimizer = torch.optim.AdamW(trainable, lr=TRAIN_LEARNING_RATE, weight_decay=0.0)
    moe.config.router_aux_loss_coef = TRAIN_AUX_LOSS_COEF
    moe.router_aux_loss_coef = TRAIN_AUX_LOSS_COEF
    moe.train()
    last: dict[str, float] = {}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    progress = tqdm(range(recipe.train_steps), desc="Training the MoE", unit="step")
    for _ in progress:
        batch = _batch(order.sample(examples, TRAIN_BATCH_SIZE), pad_id)
        out = moe(**batch, output_router_logits=True)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        last = {"loss": out.loss.item(), "aux_loss": out.aux_loss.item()}
        progress.set_postfix(loss=f"{last['loss']:.3f}", aux=f"{last['aux_loss']:.3f}")
    for parameter in moe.parameters():
        parameter.requires_grad_(True)
    moe.eval()
    return last


def chat_perplexity(model: Any, tokenizer: Any, chats: tuple[HeldOutChat, ...] = HELD_OUT_CHATS) -> float:
    """exp(mean cross-entropy) over the reference answers' tokens of `chats`, given their prompts."""
    import math

    import torch

    conversations = [
        [{"role": "user", "content": chat["prompt"]}, {"role": "assistant", "content": chat["answer"]}]
        for chat in chats
    ]
    total, count = 0.0, 0
    with torch.inference_mode():
        for ids, labels in chat_examples(tokenizer, conversations, max_tokens=512):
            logits = model(input_ids=ids[None]).logits[0, :-1]
            targets = labels[1:]
            keep = targets != -100
            loss = torch.nn.functional.cross_entropy(logits[keep].float(), targets[keep], reduction="sum")
            total += loss.item()
            count += int(keep.sum())
    return math.exp(total / count)


def expert_utilisation(model: Any, tokenizer: Any, chats: tuple[HeldOutChat, ...] = HELD_OUT_CHATS) -> list[list[float]]:
    """Per layer, the share of top-k routing choices each expert got on the held-out chats. Shape [layers][E]."""
    import torch

    experts = model.config.num_local_experts
    top_k = model.config.num_experts_per_tok
    counts = torch.zeros(model.config.num_hidden_layers, experts)
    conversations = [
        [{"role": "user", "content": chat["prompt"]}, {"role": "assistant", "content": chat["answer"]}]
        for chat in chats
    ]
    with torch.inference_mode():
        for ids, _ in chat_examples(tokenizer, conversations, max_tokens=512):
            out = model(input_ids=ids[None], output_router_logits=True)
            for layer, logits in enumerate(out.router_logits):
                chosen = torch.topk(logits, top_k, dim=-1).indices.flatten()
                counts[layer] += torch.bincount(chosen, minlength=experts).float()
    shares = counts / counts.sum(dim=1, keepdim=True)
    return [[round(share, 4) for share in row.tolist()] for row in shares]


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
        "layout": CHECKPOINT_LAYOUT,
    }
    if recipe.train_steps:
        source["training_data_sha256"] = training_data_sha256()
        source["training"] = {
            "max_tokens": TRAIN_MAX_TOKENS,
            "batch": TRAIN_BATCH_SIZE,
            "lr": TRAIN_LEARNING_RATE,
            "aux_loss_coef": TRAIN_AUX_LOSS_COEF,
            "trained": f"experts and routers of the top {TRAIN_TOP_LAYERS} layers",
        }
    return source


def inhouse_moe_build(
    target: Path, *, dense_dir: Path, recipe: MoeRecipe = MoeRecipe(), force: bool = False, log: Log = print
) -> BuildResult:
    """Upcycle the dense checkpoint at `dense_dir` into a Mixtral checkpoint at `target` (once per source)."""
    recipe.check()
    source = inhouse_moe_source(Path(dense_dir), recipe)

    def build(out: Path) -> dict[str, Any]:
        started_cpu, started_wall = time.process_time(), time.monotonic()
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
            facts["training"] = train(moe, tokenizer, recipe, log=log)
            log("Measuring the held-out chat perplexity and the expert utilisation")
            facts["held_out_chat_perplexity"] = round(chat_perplexity(moe, tokenizer), 4)
            facts["expert_utilisation"] = expert_utilisation(moe, tokenizer)
        counts = parameter_counts(moe)
        log(f"Writing the checkpoint: {counts.describe()}")
        # The experts as the model holds them (one fused tensor per layer), not the hub's one file entry per
        # expert: loading those merges them into new tensors while the mapped file stays resident, two copies.
        moe.save_pretrained(out, save_original_format=False)
        tokenizer.save_pretrained(out)
        facts.update(
            architecture=type(moe).__name__,
            total_parameters=counts.total,
            active_parameters=counts.active,
            experts=counts.experts,
            top_k=counts.top_k,
            # CPU seconds over all threads: on a loaded machine the honest measure of the build's cost.
            build_cpu_seconds=round(time.process_time() - started_cpu, 1),
            build_wall_seconds=round(time.monotonic() - started_wall, 1),
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
