"""DPO stage: preference-tune a (chat SFT) checkpoint on the pairs of `tasks.finetune.pref_data`.

The reference model is the starting checkpoint, frozen: its completion log-probs are computed once up front, before
the first step (the policy starts as an exact copy, LoRA's B matrices being zero), so no second model is held
while training. A pair is rendered with the model's own chat template (`models.text.chat.encode_chat`): the prompt with
the generation prompt, then prompt + answer; the completion is what follows the prompt (the answer, its
end-of-turn token and whatever the template writes after it), as TRL counts it. Long pairs keep the end of the
prompt (`max_prompt_len`) and the start of the answer (`max_len` in all). The loss and rewards are
`models.optimisation.dpo`.

DPO supplies its data (`PairBatches`) and loss to the training kernel (`tasks.train.loop.TrainLoop`: AdamW, its own
`Schedule` with floor `min_lr_ratio`, clipping, the NaN/inf guard, checkpoints every `checkpoint_every` steps and
exact resume after a kill; LoRA runs save merged weights). A resumed run recomputes the reference from the starting
checkpoint before loading its own weights. The result is a `CheckpointRef`, so evaluate and register take it
unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from models.optimisation.lora import LoraConfig
from tasks.core import progress
from tasks.core.artifacts import CheckpointRef, finish_stage, load_done, stage_dir
from tasks.finetune.pref_data import PreferenceSet, load_pairs
from tasks.finetune.start import start_from


class DPOConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    beta: float = Field(default=0.1, gt=0, description="DPO beta: how far the policy may move from the reference.")
    max_steps: int = Field(default=100, ge=1, description="Optimizer steps (epochs over the pairs repeat).")
    batch_size: int = Field(default=4, ge=1, description="Pairs per step.")
    max_len: int = Field(default=256, ge=8, description="Longest prompt + answer in tokens (capped by the context).")
    max_prompt_len: int = Field(default=128, ge=1, description="Longest prompt; longer ones keep their end.")
    lr: float = Field(default=5e-6, gt=0, description="Peak AdamW learning rate.")
    warmup_steps: int = Field(default=5, ge=0, description="Linear warmup steps.")
    schedule: Literal["cosine", "wsd", "constant"] = Field(default="cosine", description="Decay after warmup.")
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1, description="Final lr as a fraction of the peak (0.1, the "
                                "value DPO ran with when it borrowed pretraining's schedule).")
    weight_decay: float = Field(default=0.0, ge=0, description="Decoupled weight decay on matrices.")
    grad_clip: float = Field(default=1.0, ge=0, description="Clip the global gradient norm (0 = off).")
    checkpoint_every: int = Field(default=0, ge=0, description="Save every N steps, so a killed run resumes (0 = end "
                                  "only).")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(default="auto", description="Autocast dtype.")
    seed: int = Field(default=1337, description="Seed of the pair order, adapter init and dropout.")
    threads: int = Field(default=0, ge=0, description="torch CPU threads; 0 = torch's default.")
    lora: LoraConfig | None = Field(
        default=None, description="Train LoRA adapters on the frozen start instead of every weight (merged into "
        "the checkpoint).",
    )


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def encode_pair(tokenizer: Any, pair: dict[str, Any], max_len: int, max_prompt_len: int):
    """(prompt ids, chosen completion ids, rejected completion ids) in the tokenizer's chat template, truncated."""
    from models.text.chat import encode_chat

    prompt = encode_chat(tokenizer, pair["prompt"], add_generation_prompt=True)[0]
    answers = []
    for key in ("chosen", "rejected"):
        full = encode_chat(tokenizer, [*pair["prompt"], {"role": "assistant", "content": pair[key]}],
                           add_generation_prompt=False)[0]
        answers.append(full)
    # where the prompt alone and prompt + answer part (a template may render the prompt end differently)
    n = min(common_prefix(prompt, answers[0]), common_prefix(prompt, answers[1]))
    head = prompt[:n][-max_prompt_len:]
    room = max(1, max_len - len(head))
    return head, answers[0][n:][:room], answers[1][n:][:room]


def pair_batch(encoded: list[tuple[list[int], list[int], list[int]]], pad_id: int):
    """(ids, completion) of B encoded pairs, each (2B, T): the chosen rows, then the rejected rows, right-padded."""
    import torch

    rows = [(p, c) for p, c, _ in encoded] + [(p, r) for p, _, r in encoded]
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    completion = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        completion[i, len(p) : len(p) + len(a)] = 1
    return ids, completion


def pair_logps(model, encoded, pad_id: int, batch_size: int, device, grad: bool = False):
    """(chosen, rejected) completion log-probs (each (N,)) of encoded pairs, `batch_size` pairs per forward."""
    import torch

    from models.optimisation.dpo import completion_logps

    chosen, rejected = [], []
    with torch.set_grad_enabled(grad):
        for i in range(0, len(encoded), batch_size):
            ids, completion = pair_batch(encoded[i : i + batch_size], pad_id)
            logps = completion_logps(model, ids.to(device), completion.to(device))
            c, r = logps.chunk(2)
            chosen.append(c)
            rejected.append(r)
    return torch.cat(chosen), torch.cat(rejected)


class PairBatches:
    """DPO's batch source: `batch_size` pair indices per step from a fresh seeded permutation per epoch; the position
    a resumed run continues from is the rest of the epoch's order and the generator's state."""

    def __init__(self, n_pairs: int, batch_size: int, seed: int):
        import torch

        self.n_pairs, self.batch_size = n_pairs, batch_size
        self.generator, self.order = torch.Generator().manual_seed(seed), []

    def next_batch(self) -> list[int]:
        import torch

        while len(self.order) < self.batch_size:
            self.order += torch.randperm(self.n_pairs, generator=self.generator).tolist()
        rows, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"order": list(self.order), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order = list(state["order"])
        self.generator.set_state(state["generator"])


def run_dpo(cfg: DPOConfig, base: CheckpointRef, data: PreferenceSet, out: Path) -> CheckpointRef:
    import torch

    from models.optimisation.dpo import dpo_loss
    from models.optimisation.lora import add_lora
    from models.optimisation.muon import OptimizerSpec, build_optimizers
    from models.weights import checkpoint as ckpt
    from tasks.train.loop import TrainLoop, load_resumed
    from tasks.train.schedule import Schedule

    t0 = time.time()
    start = start_from(cfg, base, out)
    device, amp, model, tokenizer = start.device, start.amp, start.model, start.tokenizer
    ckpt.clear_staging(out)  # half-written checkpoints of a killed run
    resume = ckpt.latest_checkpoint(out)  # a killed run continues from its last checkpoint
    torch.manual_seed(cfg.seed)  # adapter init and dropout; a resumed run then restores the generator's state
    if cfg.lora is not None:
        add_lora(model, cfg.lora)
    model.to(device)
    max_len = min(cfg.max_len, model.config.seq_len)
    encoded = [encode_pair(tokenizer, p, max_len, min(cfg.max_prompt_len, max_len - 1)) for p in load_pairs(data)]
    model.eval()  # the reference: the starting model, before any step (dropout off), so before resumed weights
    with amp:
        ref_chosen, ref_rejected = pair_logps(model, encoded, tokenizer.pad_id, cfg.batch_size, device)
    model.train()
    load_resumed(model, resume, lora=cfg.lora is not None)
    last: list = []  # the last step's DPOLoss: its rewards go into the metrics

    def loss(rows: list[int]):
        with amp:
            chosen, rejected = pair_logps(model, [encoded[i] for i in rows], tokenizer.pad_id, len(rows), device,
                                          grad=True)
        last[:] = [dpo_loss(chosen, rejected, ref_chosen[rows], ref_rejected[rows], cfg.beta)]
        return last[0].loss, sum(len(p) + len(c) + len(r) for p, c, r in (encoded[i] for i in rows))

    spec = OptimizerSpec("adamw", cfg.lr, cfg.weight_decay, (0.9, 0.95), muon_lr=cfg.lr, fused=device.type == "cuda")
    schedule = Schedule(cfg.max_steps, cfg.warmup_steps, cfg.schedule, floor=cfg.min_lr_ratio)
    batches = PairBatches(len(encoded), cfg.batch_size, cfg.seed)
    loop = TrainLoop(model, build_optimizers(model, spec), schedule, batches, loss, out, device=device,
                     grad_clip=cfg.grad_clip, name="dpo",
                     advice="lower dpo.lr or dpo.beta, or raise dpo.warmup_steps", lora=cfg.lora is not None)
    history: dict[str, float] = {}
    if resume is not None:
        loop.restore(resume)
        history = ckpt.read_sidecar(resume)["metrics"]

    def report(log) -> None:
        step, seconds, rewards = loop.state.step, loop.state.train_seconds, last[0]
        history.update(train_loss=log.loss,
                       train_reward_acc=float((rewards.chosen_rewards > rewards.rejected_rewards).float().mean()),
                       train_margin=float((rewards.chosen_rewards - rewards.rejected_rewards).mean()))
        progress.update("dpo", done=step, total=cfg.max_steps, unit="steps", note=f"loss {log.loss:.3f}",
                        eta_s=(cfg.max_steps - step) * seconds / step)

    def save() -> Path | None:
        sidecar = {
            **start.inherited(),
            "dpo": cfg.model_dump(mode="json"),
            "preference_data": {"manifest_sha256": data.manifest_sha256, "path": data.path},
            "base_checkpoint": {"path": str(start.base_dir), "manifest_sha256": base.manifest_sha256},
            "tokens_seen": loop.state.tokens_seen, "n_params": start.n_params, "metrics": history,
        }
        return loop.save(sidecar, start.base_dir / ckpt.TOKENIZER, keep_last=1)

    loop.fit(on_step=report, save=save, checkpoint_every=cfg.checkpoint_every)
    if loop.saved_step != loop.state.step:
        save()
    state, final = loop.state, ckpt.step_dir(out, loop.state.step)
    stats = {"pairs": len(encoded), "steps": state.step, "tokens_seen": state.tokens_seen,
             "train_seconds": round(state.train_seconds, 3), **history}
    ref = CheckpointRef.at(final, step=state.step, n_params=start.n_params, tokens_seen=state.tokens_seen,
                           train_seconds=state.train_seconds, final_train_loss=history["train_loss"])
    return finish_stage(out, ref, config=cfg, entry=run_dpo, stats=stats, files=ckpt.checkpoint_files(final),
                        started=t0)


@task(name="dpo", retries=1)
def dpo(cfg: DPOConfig, base: CheckpointRef, data: PreferenceSet) -> CheckpointRef:
    out = stage_dir("dpo", cfg, base, data, entry=run_dpo)
    return load_done(out, CheckpointRef) or run_dpo(cfg, base, data, out)
