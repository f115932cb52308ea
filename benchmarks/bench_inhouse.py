"""The loop end to end on the CPU: simulated voters vote, train_inhouse learns from their votes, the voters judge
the new version against its parent.

Embedded mode in a throwaway directory (SQLite, in-memory channel layer, generation on threads in this
process), with the default models already built under ``--models-dir`` (``manage.py seed_models`` builds them):

1. ``seed_models --skip-build`` registers the built defaults; answers are cut to ``--max-new-tokens``.
2. A ``LengthInstructionVoter`` ("... Answer in at most N words."; it prefers the answer that obeys, then the
   shorter) plays ``--battles`` anonymous battles through the real websocket path, on the first half of its
   tasks. Its votes are marked simulated.
3. ``manage.py train_inhouse --from-votes --include-simulated`` trains the current in-house version on them.
4. The parent is published (an operator's step) so the new preview meets it; the in-house share and the rival
   factor (``ARENA_INHOUSE_RIVALS``) make the new version meet its parent often. The same voter plays
   ``--eval-battles`` battles on the other half of its tasks: prompts it was not trained on.
5. Bradley-Terry with 95% sandwich intervals (the ``ratings`` library the leaderboard uses) on the simulated
   votes, before (step 2) and after (steps 2 and 4), and the head-to-head of the new version against its parent.
   Simulated votes are never on the public leaderboard, so the fit is done here, as the staff would.

    .venv/bin/python benchmarks/bench_inhouse.py --battles 60 --eval-battles 60 --steps 40

Writes benchmarks/results/inhouse.md (``--out``; ``--out -`` for stdout only).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--battles", type=int, default=60, help="Simulated battles before training.")
    parser.add_argument("--eval-battles", type=int, default=60, help="Simulated battles after training.")
    parser.add_argument("--steps", type=int, default=40, help="DPO steps.")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "var" / "models")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inhouse.md"))
    parser.add_argument("--greedy-tokens", type=int, default=32, help="Tokens per greedy answer in the MoE report.")
    parser.add_argument("--skip-loop", action="store_true", help="Only the built default against SmolLM2.")
    return parser.parse_args()


def moe_report(models_dir: Path, greedy_tokens: int) -> str:
    """The built default MoE against the dense SmolLM2 on the held-out chats: greedy answers, perplexity,
    expert utilisation per layer, and what the build cost."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models_hub.builders import INHOUSE_MOE_SLUG, SMOLLM2_SLUG, marker_read
    from models_hub.builders.moe import CHAT_SYSTEM_PROMPT, TRAIN_TOP_LAYERS, chat_perplexity, expert_utilisation
    from models_hub.builders.training_data import HELD_OUT_CHATS

    dense_dir, moe_dir = models_dir / SMOLLM2_SLUG, models_dir / INHOUSE_MOE_SLUG
    tokenizer = AutoTokenizer.from_pretrained(dense_dir)
    dense = AutoModelForCausalLM.from_pretrained(dense_dir, dtype=torch.float32).eval()
    moe = AutoModelForCausalLM.from_pretrained(moe_dir, dtype=torch.float32).eval()
    marker = marker_read(moe_dir)

    def greedy(model: object, prompt: str) -> str:
        chat = [{"role": "system", "content": CHAT_SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=greedy_tokens, do_sample=False)
        return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    rows, differ = [], 0
    for chat in HELD_OUT_CHATS:
        a, b = greedy(dense, chat["prompt"]), greedy(moe, chat["prompt"])
        differ += a != b
        cell = lambda text: text.replace("|", "/").replace("\n", " ")[:90]  # noqa: E731
        rows.append(f"| {chat['prompt']} | {cell(a)} | {cell(b)} |")
    dense_ppl, moe_ppl = chat_perplexity(dense, tokenizer), chat_perplexity(moe, tokenizer)
    shares = expert_utilisation(moe, tokenizer)
    layers = moe.config.num_hidden_layers
    utilisation = ["| layer | trained | expert 0 | expert 1 | expert 2 | expert 3 |", "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for layer, row in enumerate(shares):
        trained = "yes" if layer >= layers - TRAIN_TOP_LAYERS else "no"
        utilisation.append(f"| {layer} | {trained} | " + " | ".join(f"{share:.1%}" for share in row) + " |")
    source = marker["source"]
    return f"""## The built default MoE against the dense SmolLM2

Recipe {source['recipe']}: {source['experts']} experts, top-{source['top_k']}, {source['train_steps']} training steps
({source['training']['trained']}, batch {source['training']['batch']}, lr {source['training']['lr']}, load-balancing
coefficient {source['training']['aux_loss_coef']}) on {len(HELD_OUT_CHATS)} held-out chats that training never saw.
Build cost: {marker['build_cpu_seconds']:.0f} CPU seconds over all threads ({marker['build_cpu_seconds'] / 2 / 60:.1f} min on
2 otherwise idle cores; {marker['build_wall_seconds'] / 60:.0f} min of wall time on this machine, shared at the time).

- Greedy answers ({greedy_tokens} tokens) that differ from SmolLM2's: **{differ} of {len(HELD_OUT_CHATS)}**.
- Held-out chat perplexity of the reference answers: SmolLM2 {dense_ppl:.3f}, MoE {moe_ppl:.3f}:
  **{moe_ppl / dense_ppl:.3f}x** the dense model (the bound is 1.1x).

| prompt | SmolLM2 | in-house MoE |
| --- | --- | --- |
{chr(10).join(rows)}

Expert utilisation per layer (share of the top-2 choices on the held-out chats; layers below the trained ones
keep their small random router, and their experts are still identical copies):

{chr(10).join(utilisation)}
"""


def main() -> None:
    args = parse()
    workdir = Path(tempfile.mkdtemp(prefix="bench-inhouse-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings", ARENA_VAR_DIR=str(workdir), ARENA_MODELS_DIR=str(args.models_dir),
        ARENA_INPROCESS_WORKERS="1", ARENA_RATE_LIMIT_BATTLES="0", ARENA_RATE_LIMIT_VOTES="0",
        ARENA_SNAPSHOT_TIMER="0", ARENA_INHOUSE_SHARE="0.8", DEBUG="0", SECRET_KEY="bench-only",
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command
    from tqdm import tqdm

    from arena.models import Vote
    from arena.simulated import LENGTH_TASKS, LengthInstructionVoter, simulated_battle_play, simulated_session_create
    from benchmarks.machine import machine
    from models_hub.models import ModelEntry
    from ratings import head_to_head, rate
    from training.services import inhouse_current

    moe_section = moe_report(args.models_dir, args.greedy_tokens)
    if args.skip_loop:
        report = f"# The in-house MoE\n\nMachine: {machine()}.\n\n{moe_section}"
        print(report)
        if args.out != "-":
            Path(args.out).write_text(report)
        return

    call_command("migrate", verbosity=0)
    call_command("seed_models", "--skip-build", stdout=io.StringIO())
    ModelEntry.objects.update(max_new_tokens=args.max_new_tokens)
    parent = inhouse_current()
    half = len(LENGTH_TASKS) // 2
    train_voter = LengthInstructionVoter(tasks=LENGTH_TASKS[:half])
    eval_voter = LengthInstructionVoter(tasks=LENGTH_TASKS[half:])
    rng = random.Random(args.seed)

    def play(voter: LengthInstructionVoter, battles: int, desc: str) -> list:
        from channels.db import database_sync_to_async

        async def all_battles() -> list:
            session = await database_sync_to_async(simulated_session_create)(voter)
            played = []
            for _ in tqdm(range(battles), desc=desc, unit="battle"):
                played.append(await simulated_battle_play(voter, session, voter.prompt(rng)))
            return played

        return asyncio.run(all_battles())

    def fit(votes: list) -> object:
        names = sorted({side.model.display_name for vote in votes for side in vote.battle.sides.all()})
        index = {name: i for i, name in enumerate(names)}
        a, b, outcome = [], [], []
        for vote in votes:
            sides = {s.position: s.model.display_name for s in vote.battle.sides.all()}
            a.append(index[sides["left"]])
            b.append(index[sides["right"]])
            outcome.append({"left": 1.0, "right": 0.0}.get(vote.choice, 0.5))
        import numpy as np

        return rate(np.array(a), np.array(b), np.array(outcome), names)

    def simulated_votes() -> list:
        return list(Vote.objects.filter(simulated=True).prefetch_related("battle__sides__model").order_by("id"))

    started = time.monotonic()
    play(train_voter, args.battles, "battles before training")
    before_votes = simulated_votes()
    before = fit(before_votes)
    vote_seconds = time.monotonic() - started

    out = io.StringIO()
    started = time.monotonic()
    call_command("train_inhouse", "--from-votes", "--include-simulated", "--steps", str(args.steps),
                 "--device", "cpu", stdout=out)
    train_seconds = time.monotonic() - started
    child = ModelEntry.objects.get(parent=parent)
    pairs_used = child.training_votes["count"]

    ModelEntry.objects.filter(pk=parent.pk).update(visibility=ModelEntry.Visibility.PUBLIC)
    os.environ["ARENA_INHOUSE_RIVALS"] = f"{parent.slug}:6"
    from django.conf import settings

    settings.ARENA_INHOUSE_RIVALS = {parent.slug: 6.0}
    play(eval_voter, args.eval_battles, "battles after training")
    after_votes = simulated_votes()
    after = fit(after_votes)
    h2h = head_to_head(after, child.display_name, parent.display_name)
    new_ids = {v.id for v in before_votes}
    direct = [v for v in after_votes if v.id not in new_ids
              and {s.model_id for s in v.battle.sides.all()} == {parent.pk, child.pk}]

    def table(ranking: object) -> str:
        rows = ["| model | score | 95% interval | votes |", "| --- | ---: | --- | ---: |"]
        for i in ranking.order():
            rows.append(f"| {ranking.names[i]} | {ranking.scores[i]:.0f} | {ranking.lower[i]:.0f} to "
                        f"{ranking.upper[i]:.0f} | {ranking.votes[i]:.0f} |")
        return "\n".join(rows)

    child_wins = sum(1 for v in direct if {"left": v.battle.sides.get(position="left").model_id,
                                           "right": v.battle.sides.get(position="right").model_id}.get(v.choice) == child.pk)
    report = f"""# The in-house model: its own, and learning from its votes

Machine: {machine()}.

{moe_section}

## The loop: simulated votes -> DPO -> a new version
Command: `.venv/bin/python benchmarks/bench_inhouse.py --battles {args.battles} --eval-battles {args.eval_battles} --steps {args.steps} --max-new-tokens {args.max_new_tokens}`.
Embedded mode (SQLite, in-process generation), the built defaults, answers cut to {args.max_new_tokens} tokens.
Voter: `LengthInstructionVoter` (prefers the answer that obeys "Answer in at most N words.", then the shorter);
trained on {half} of its tasks, judged on the other {len(LENGTH_TASKS) - half}.

- Votes before training: {len(before_votes)} simulated battles ({vote_seconds:.0f} s); pairs trained on (decisive,
  with the in-house version on one side): {pairs_used}.
- Training: `train_inhouse --from-votes --include-simulated --steps {args.steps}` on the CPU, {train_seconds:.0f} s;
  DPO loss on its pairs {child.recipe.get('dpo_loss_before', float('nan')):.4f} -> {child.recipe.get('dpo_loss_after', float('nan')):.4f}.
- New version: {child.display_name} ({child.version_label}), preview codename `{child.codename}`.

### Before training ({len(before_votes)} votes)

{table(before)}

### After training ({len(after_votes)} votes, {len(after_votes) - len(before_votes)} on held-out prompts)

{table(after)}

### Head-to-head: {child.display_name} against {parent.display_name}

Score difference {h2h.difference:+.0f} (95% interval {h2h.lower:+.0f} to {h2h.upper:+.0f}), P(new is better)
{h2h.probability_better:.3f}, {h2h.battles:.0f} direct battles ({child_wins} won by the new version), more votes
needed to separate them: {h2h.more_votes_needed}. **{"The new version beats its parent: the 95% interval excludes 0." if h2h.lower > 0 else "Not separated: the 95% interval includes 0 (or favours the parent)."}**
"""
    print(report)
    if args.out != "-":
        Path(args.out).write_text(report)
        print(f"written to {args.out}")
    (workdir / "figures.json").write_text(json.dumps({"h2h": h2h.__dict__, "train_seconds": train_seconds}))


if __name__ == "__main__":
    main()
