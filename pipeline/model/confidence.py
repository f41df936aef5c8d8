"""Per-concept confidence MLP: w_k = MLP([e_t^k; e_av^k; e_at^k; e_v^k]), shared across k."""

from __future__ import annotations

import torch
from torch import nn


class ConfidenceMLP(nn.Module):
    """Linear(S*d -> H) - ReLU - Linear(H -> 1) over S concatenated concept slots.

    The output is an unnormalised weight (no softmax over k), as in the official code.
    ``slots`` names the inputs in concatenation order; the first layer's weight splits into one
    [H, d] block per slot (``slot_weight``), which the fast scorer uses: the layer is linear in
    its concatenated input, so caption-only and video-only parts can be computed once per item.
    """

    def __init__(self, slots: tuple[str, ...], concept_dim: int, hidden: int) -> None:
        super().__init__()
        if len(set(slots)) != len(slots) or not slots:
            raise ValueError(f"confidence MLP: slots must be distinct and non-empty, got {slots}")
        self.slots, self.concept_dim, self.hidden = tuple(slots), concept_dim, hidden
        self.fc1 = nn.Linear(len(slots) * concept_dim, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """parts[slot]: [..., d] tensors broadcastable to one shape -> w [...] (the direct form)."""
        missing = [s for s in self.slots if s not in parts]
        if missing:
            raise ValueError(f"confidence MLP: missing inputs {missing} (slots {self.slots})")
        xs = torch.broadcast_tensors(*(parts[s] for s in self.slots))
        return self.head(self.fc1(torch.cat(xs, dim=-1)))

    def head(self, pre_activation: torch.Tensor) -> torch.Tensor:
        """ReLU and the second layer: [..., H] -> [...]."""
        return self.fc2(torch.relu(pre_activation)).squeeze(-1)

    def slot_weight(self, slot: str) -> torch.Tensor:
        """The [H, d] block of the first layer that multiplies ``slot``."""
        i = self.slots.index(slot)
        return self.fc1.weight[:, i * self.concept_dim:(i + 1) * self.concept_dim]

    def slot_partial(self, slot: str, x: torch.Tensor) -> torch.Tensor:
        """x [..., d] -> W1_slot x [..., H] (no bias)."""
        return x @ self.slot_weight(slot).t()
