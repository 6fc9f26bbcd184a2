"""Grouping helper shared by the group-relative objectives."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch


def group_index(group_ids: Sequence[Hashable], device: torch.device | None = None) -> tuple[torch.Tensor, int]:
    """Map arbitrary hashable group ids (verl's ``uid``) to dense indices.

    Returns ``(index [B] long, num_groups)``; groups are numbered in order of first appearance.
    A numpy array of ids (verl stores ``uid`` as an object array) works as well as a list.
    """
    dense: dict[Hashable, int] = {}
    index = [dense.setdefault(gid.item() if hasattr(gid, "item") else gid, len(dense)) for gid in group_ids]
    return torch.tensor(index, dtype=torch.long, device=device), len(dense)


def check_batch(name: str, tensor: torch.Tensor, group_ids: Sequence[Hashable]) -> None:
    if tensor.dim() != 1:
        raise ValueError(f"{name} must have shape [B], got {tuple(tensor.shape)}")
    if len(group_ids) != tensor.shape[0]:
        raise ValueError(f"group_ids has {len(group_ids)} entries but {name} has {tensor.shape[0]}")
