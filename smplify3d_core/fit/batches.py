"""Splitting a batch of persons into groups and putting the groups' results back in order.

A tracked frame fits its persons in groups (cold persons with the full schedule, tracked persons
warm-started with the reduced one, failed warm fits cold again); :func:`select_persons` takes a
group out of :class:`~smplify3d_core.fit.inputs.FitInputs` (or a result) and
:func:`scatter_persons` assembles the groups' :class:`~smplify3d_core.fit.optimizer.FitResult` s
into one result in the frame's person order.
"""
from __future__ import annotations

import dataclasses
from typing import List, Sequence, Tuple

import torch

# fields that describe the whole batch, not one person
_SHARED_FIELDS = {"sensor_origin", "stage_seconds", "stage_losses", "verdict"}


def _per_person_fields(record) -> List[str]:
    return [f.name for f in dataclasses.fields(record) if f.name not in _SHARED_FIELDS]


def select_persons(record, indices: Sequence[int]):
    """A copy of ``record`` (FitInputs, FitResult or VerdictMeasures) holding only the persons ``indices``
    (in that order); tensors are indexed on their first (batch) dimension, lists per person."""
    index = list(int(i) for i in indices)
    changes = {}
    for name in _per_person_fields(record):
        value = getattr(record, name)
        if isinstance(value, torch.Tensor):
            changes[name] = value[torch.as_tensor(index, dtype=torch.long, device=value.device)]
        elif isinstance(value, list):
            changes[name] = [value[i] for i in index]
    if getattr(record, "verdict", None) is not None:
        changes["verdict"] = select_persons(record.verdict, index)
    if hasattr(record, "stage_losses"):
        rows = torch.as_tensor(index, dtype=torch.long)
        changes["stage_losses"] = {k: (before[rows], after[rows]) for k, (before, after) in record.stage_losses.items()}
    return dataclasses.replace(record, **changes)


def scatter_persons(parts: Sequence[Tuple[Sequence[int], object]], batch: int):
    """One record of ``batch`` persons from ``parts`` = [(indices, record of len(indices) persons)]:
    person ``indices[k]`` of the result is person k of that part. Every person must come from exactly
    one part. Stage times add up over the parts; stage losses are NaN for persons a stage did not see."""
    owners = sorted(int(i) for indices, _ in parts for i in indices)
    if owners != list(range(batch)):
        raise ValueError(f"the parts cover persons {owners}, expected each of 0..{batch - 1} once")
    first = parts[0][1]
    changes = {}
    for name in _per_person_fields(first):
        value = getattr(first, name)
        if isinstance(value, torch.Tensor):
            out = value.new_zeros((batch,) + tuple(value.shape[1:]))
            for indices, record in parts:
                out[torch.as_tensor(list(indices), dtype=torch.long)] = getattr(record, name).to(out.device)
            changes[name] = out
        elif isinstance(value, list):
            out = [None] * batch
            for indices, record in parts:
                for k, i in enumerate(indices):
                    out[int(i)] = getattr(record, name)[k]
            changes[name] = out
    if hasattr(first, "stage_seconds"):
        seconds: dict = {}
        for _, record in parts:
            for key, value in record.stage_seconds.items():
                seconds[key] = seconds.get(key, 0.0) + float(value)
        changes["stage_seconds"] = seconds
    if hasattr(first, "stage_losses"):
        losses: dict = {}
        for indices, record in parts:
            index = torch.as_tensor(list(indices), dtype=torch.long)
            for key, (before, after) in record.stage_losses.items():
                if key not in losses:
                    losses[key] = (torch.full((batch,), float("nan"), dtype=before.dtype),
                                   torch.full((batch,), float("nan"), dtype=after.dtype))
                losses[key][0][index] = before
                losses[key][1][index] = after
        changes["stage_losses"] = losses
    if hasattr(first, "verdict"):
        verdicts = [(indices, record.verdict) for indices, record in parts]
        changes["verdict"] = scatter_persons(verdicts, batch) if all(v is not None for _, v in verdicts) else None
    return dataclasses.replace(first, **changes)


def stack_inputs(records: Sequence):
    """One :class:`~smplify3d_core.fit.inputs.FitInputs` of the persons of ``records`` (FitInputs, e.g. the
    same person in several frames), in order. The LiDAR points are padded to the longest set (padding
    masked out). Raises ValueError when the records' sensor origins differ (one batch has one)."""
    if not records:
        raise ValueError("stack_inputs needs at least one record")
    first = records[0]
    for record in records[1:]:
        if not torch.allclose(record.sensor_origin.to(first.sensor_origin.device), first.sensor_origin, atol=1e-6):
            raise ValueError("the records have different sensor origins; a batch has one")
    longest = max(int(record.points.shape[1]) for record in records)
    changes = {}
    for name in _per_person_fields(first):
        values = [getattr(record, name) for record in records]
        if isinstance(values[0], torch.Tensor):
            if name in ("points", "points_mask"):
                values = [torch.nn.functional.pad(v, (0, 0, 0, longest - v.shape[1]) if v.dim() == 3
                                                  else (0, longest - v.shape[1])) for v in values]
            changes[name] = torch.cat([v.to(values[0].device) for v in values])
        elif isinstance(values[0], list):
            changes[name] = [item for value in values for item in value]
    return dataclasses.replace(first, **changes)
