"""Direct Preference Optimisation (Rafailov et al., 2023) as tensor maths: completion log-probs, the sigmoid loss
with its implicit rewards, and the per-token KL of a policy to its reference.

A preference pair is two sequences sharing a prompt: `prompt + chosen` and `prompt + rejected`. A batch of B pairs
is one (2B, T) tensor, the B chosen rows first, then the B rejected rows (TRL's layout), right-padded: a causal model
needs no attention mask for right padding, because a position never sees the ones after it. `completion` (2B, T)
is 1 on the tokens after the prompt, the only ones whose log-probability counts.

The implicit reward of a completion is `beta * (log pi(y|x) - log pi_ref(y|x))`; the loss is
`-log sigmoid(r_chosen - r_rejected)`, averaged over pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class DPOLoss(NamedTuple):
    loss: torch.Tensor  # () mean over pairs
    chosen_rewards: torch.Tensor  # (B,) beta * (log pi - log pi_ref) of the chosen completions, detached
    rejected_rewards: torch.Tensor  # (B,) the same for the rejected ones


def next_token_logprobs(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t+1] | ids[:, :t+1]) for every position: (N, T) -> (N, T-1), in float32."""
    logits, _ = model(ids[:, :-1])  # (N, T-1, V) float32
    return logits.gather(-1, ids[:, 1:, None])[..., 0] - torch.logsumexp(logits, dim=-1)


def completion_logps(model: torch.nn.Module, ids: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
    """Sum of log p over the completion tokens of each row: (N, T), (N, T) -> (N,)."""
    return (next_token_logprobs(model, ids) * completion[:, 1:]).sum(dim=-1)


def dpo_loss(
    policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
    beta: float,
) -> DPOLoss:
    """The sigmoid DPO loss of B pairs from their completion log-probs (each (B,)) under the policy and reference."""
    chosen = beta * (policy_chosen - ref_chosen)  # (B,)
    rejected = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen - rejected).mean()
    return DPOLoss(loss, chosen.detach(), rejected.detach())


def completion_kl(
    log_p: torch.Tensor, log_q: torch.Tensor, completion: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum over completion positions of KL(p || q), number of those positions), each (N,), from the next-token
    log-distributions (N, T-1, V) of the policy (`log_p`) and the reference (`log_q`) on the same sequences (N, T).

    The KL is exact over the vocabulary at each position, with the given (held-out) sequences as prefixes: how far
    the policy's next-token distribution moved from the reference's where it answers."""
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)  # (N, T-1)
    mask = completion[:, 1:].to(kl.dtype)
    return (kl * mask).sum(dim=-1), mask.sum(dim=-1)


def token_logprobs(log_probs: torch.Tensor, ids: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
    """Sum of log p over the completion tokens, from next-token log-distributions (N, T-1, V): -> (N,)."""
    return (log_probs.gather(-1, ids[:, 1:, None])[..., 0] * completion[:, 1:]).sum(dim=-1)
