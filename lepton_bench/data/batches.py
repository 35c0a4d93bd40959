"""Batches on the device: endless seeded train streams (length-bucketed text, augmented images) and
evaluation passes."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .types import Split


def augment_images(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (reflect-padded by ``pad``) + horizontal flip, vectorized on x's device."""
    B, C, H, W = x.shape
    xp = torch.nn.functional.pad(x.float(), (pad,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (B,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (B,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(W, device=x.device))[:, None, None, :]
    out = xp[torch.arange(B, device=x.device)[:, None, None, None],
             torch.arange(C, device=x.device)[None, :, None, None], rows, cols]
    flip = torch.rand(B, generator=gen, device=x.device) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.to(x.dtype)


class TrainStream:
    """Endless, seeded train batches of one task, already on the device.

    Text batches come from buckets of similar length and are cut to their longest
    example, so a batch of short reviews costs less. The order depends only on
    (seed, task), so single- and multi-task runs see the same examples.
    """

    def __init__(self, split: Split, batch_size: int, seed: int, device: torch.device,
                 augment: bool = False, bucket: int = 50, rows: torch.Tensor | None = None):
        self.split, self.device, self.augment = split, device, augment
        self.rows = rows   # draw from these rows of the split only (a label budget's); None: all of them
        self.batch_size = min(batch_size, len(split) if rows is None else len(rows))
        self.lengths = split.tensors["lengths"].cpu() if "lengths" in split.tensors else None
        self.cpu_gen = torch.Generator().manual_seed(seed)
        self.dev_gen = torch.Generator(device=device).manual_seed(seed)
        self.bucket = bucket
        self.epoch, self.examples = 0, 0
        self._queue: list[torch.Tensor] = []

    def _refill(self) -> None:
        n, bs = len(self.split) if self.rows is None else len(self.rows), self.batch_size
        perm = torch.randperm(n, generator=self.cpu_gen)[: n - n % bs]   # drop the ragged tail
        if self.rows is not None:
            perm = self.rows[perm]
        batches = list(perm.view(-1, bs))
        if self.lengths is not None:
            chunk = bs * self.bucket
            batches = []
            for start in range(0, len(perm), chunk):
                part = perm[start:start + chunk]
                part = part[torch.argsort(self.lengths[part], stable=True)]
                batches += list(part.view(-1, bs))
            order = torch.randperm(len(batches), generator=self.cpu_gen)
            batches = [batches[i] for i in order]
        self._queue = batches
        self.epoch += 1

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        return self.batch_of(self.next_rows())

    def next_rows(self) -> torch.Tensor:
        """The row numbers of the next batch (host), counted as seen."""
        if not self._queue:
            self._refill()
        idx = self._queue.pop()
        self.examples += len(idx)
        return idx

    def batch_of(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The batch of these rows on the device (augmented images when the stream augments)."""
        return select(self.split, idx, self.lengths, self.device, self.dev_gen if self.augment else None)


def select(split: Split, idx: torch.Tensor, lengths: torch.Tensor | None, device: torch.device,
           gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    if device.type == "cuda":   # pinned host memory: the copy overlaps with queued GPU work
        idx = idx.pin_memory()
    dev_idx = idx.to(device, non_blocking=True)
    batch = {}
    if lengths is not None:
        host = lengths[idx]
        L = int(host.max())  # host-side lengths: no device sync
        for k, v in split.tensors.items():
            batch[k] = v[dev_idx, :L] if v.dim() >= 2 else v[dev_idx]   # (B, L) and (B, L, chars)
        batch["host_lengths"] = host   # on the host, for what needs them there (packing, metrics)
    else:
        batch = {k: v[dev_idx] for k, v in split.tensors.items()}
    if gen is not None and "x" in batch:
        batch["x"] = augment_images(batch["x"], gen)
    return batch


def eval_batches(split: Split, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, dict]]:
    """All examples once, text sorted by length (less padding); yields (indices, batch)."""
    lengths = split.tensors["lengths"].cpu() if "lengths" in split.tensors else None
    order = torch.argsort(lengths, stable=True) if lengths is not None else torch.arange(len(split))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield idx, select(split, idx, lengths, device)
