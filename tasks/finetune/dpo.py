"""DPO stage: preference-tune a (chat SFT) checkpoint on the pairs of `tasks.finetune.pref_data`.

The reference model is the starting checkpoint, frozen: its completion log-probs are computed once up front, before
the first step (the policy starts as an exact copy, LoRA's B matrices being zero), so no second model is held
while training. A pair is rendered with the model's own chat template (`models.chat.encode_chat`): the prompt with
the generation prompt, then prompt + answer; the completion is what follows the prompt (the answer, its
end-of-turn token and whatever the template writes after it), as TRL counts it. Long pairs keep the end of the
prompt (`max_prompt_len`) and the start of the answer (`max_len` in all). The loss and rewards are `models.dpo`.

The trainer's pieces are SFT's: `models.muon.build_optimizers` (AdamW), `tasks.train.train.lr_multiplier`, LoRA from
`models.lora` (the checkpoint holds merged weights), `models.checkpoint.save_checkpoint`; the result is a
`CheckpointRef`, so evaluate and register take it unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from prefect import task
from pydantic import BaseModel, ConfigDict, Field

from models.lora import LoraConfig
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
    weight_decay: float = Field(default=0.0, ge=0, description="Decoupled weight decay on matrices.")
    grad_clip: float = Field(default=1.0, ge=0, description="Clip the global gradient norm (0 = off).")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(default="auto", description="Autocast dtype.")
    seed: int = Field(default=1337, description="Seed of the pair order.")
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
    from models.chat import encode_chat

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

    from models.dpo import completion_logps

    chosen, rejected = [], []
    with torch.set_grad_enabled(grad):
        for i in range(0, len(encoded), batch_size):
            ids, completion = pair_batch(encoded[i : i + batch_size], pad_id)
            logps = completion_logps(model, ids.to(device), completion.to(device))
            c, r = logps.chunk(2)
            chosen.append(c)
            rejected.append(r)
    return torch.cat(chosen), torch.cat(rejected)


def run_dpo(cfg: DPOConfig, base: CheckpointRef, data: PreferenceSet, out: Path) -> CheckpointRef:
    import torch

    from models import checkpoint as ckpt
    from models.dpo import dpo_loss
    from models.lora import add_lora, merged_state
    from models.muon import build_optimizers
    from tasks.train.train import TrainConfig, lr_multiplier

    t0 = time.time()
    start = start_from(cfg, base, out)
    base_dir = start.base_dir
    device, amp, model, tokenizer, n_params = start.device, start.amp, start.model, start.tokenizer, start.n_params
    if cfg.lora is not None:
        add_lora(model, cfg.lora)
    model.to(device)
    max_len = min(cfg.max_len, model.config.seq_len)
    encoded = [encode_pair(tokenizer, p, max_len, min(cfg.max_prompt_len, max_len - 1)) for p in load_pairs(data)]
    model.eval()  # the reference: the starting model, before any step (dropout off)
    with amp:
        ref_chosen, ref_rejected = pair_logps(model, encoded, tokenizer.pad_id, cfg.batch_size, device)
    model.train()
    optimizers = build_optimizers(model, "adamw", cfg.lr, cfg.weight_decay, (0.9, 0.95), cfg.lr,
                                  device.type == "cuda")
    schedule = TrainConfig(max_steps=cfg.max_steps, warmup_steps=cfg.warmup_steps, schedule=cfg.schedule, lr=cfg.lr)
    history: dict[str, float] = {}
    step, train_seconds, tokens_seen = 0, 0.0, 0
    generator = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    while step < cfg.max_steps:
        t_step = time.time()
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * lr_multiplier(schedule, step, 0.0)
        while len(order) < cfg.batch_size:  # a fresh seeded permutation per epoch
            order += torch.randperm(len(encoded), generator=generator).tolist()
        rows, order = order[: cfg.batch_size], order[cfg.batch_size :]
        with amp:
            chosen, rejected = pair_logps(model, [encoded[i] for i in rows], tokenizer.pad_id, len(rows), device,
                                          grad=True)
        out_loss = dpo_loss(chosen, rejected, ref_chosen[rows], ref_rejected[rows], cfg.beta)
        out_loss.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += sum(len(p) + len(c) + len(r) for p, c, r in (encoded[i] for i in rows))
        train_seconds += time.time() - t_step
        history = {"train_loss": out_loss.loss.item(),
                   "train_reward_acc": float((out_loss.chosen_rewards > out_loss.rejected_rewards).float().mean()),
                   "train_margin": float((out_loss.chosen_rewards - out_loss.rejected_rewards).mean())}
        progress.update("dpo", done=step, total=cfg.max_steps, unit="steps", note=f"loss {history['train_loss']:.3f}",
                        eta_s=(cfg.max_steps - step) * train_seconds / step)
    sidecar = {
        **start.inherited(),
        "dpo": cfg.model_dump(mode="json"),
        "preference_data": {"manifest_sha256": data.manifest_sha256, "path": data.path},
        "base_checkpoint": {"path": str(base_dir), "manifest_sha256": base.manifest_sha256},
        "tokens_seen": tokens_seen, "n_params": n_params, "metrics": history,
    }
    merged = merged_state(model) if cfg.lora is not None else None
    final = ckpt.save_checkpoint(out, step, model, {"step": step}, sidecar, base_dir / ckpt.TOKENIZER, keep_last=1,
                                 model_state=merged)
    stats = {"pairs": len(encoded), "steps": step, "tokens_seen": tokens_seen, "train_seconds": round(train_seconds, 3),
             **history}
    ref = CheckpointRef(path=str(out), checkpoint=final.name, tokenizer_file=str((final / ckpt.TOKENIZER).resolve()),
                        step=step, n_params=n_params, tokens_seen=tokens_seen, train_seconds=round(train_seconds, 3),
                        final_train_loss=history["train_loss"])
    files = [f"{final.name}/{name}" for name in (ckpt.WEIGHTS, ckpt.STATE, ckpt.SIDECAR, ckpt.TOKENIZER)]
    return finish_stage(out, ref, config=cfg, entry=run_dpo, stats=stats, files=files, started=t0)


@task(name="dpo", retries=1)
def dpo(cfg: DPOConfig, base: CheckpointRef, data: PreferenceSet) -> CheckpointRef:
    out = stage_dir("dpo", cfg, base, data, entry=run_dpo)
    return load_done(out, CheckpointRef) or run_dpo(cfg, base, data, out)
