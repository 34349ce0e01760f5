"""Sample order: a reproducible, resumable *shard-window shuffle*, split evenly over processes.

Shards are shuffled, and the records of each window of `window_shards` consecutive shards are shuffled
together, so a loader worker holds only a few shards at once while a batch still mixes patches from many
source images. The order depends only on (seed, epoch), so a resumed run replays exactly the same batches.
"""

from __future__ import annotations

from typing import Iterator

import torch


def epoch_order(dataset, seed: int, epoch: int, window_shards: int) -> list[int]:
    """The global sample order of an epoch: shards shuffled, records shuffled within windows of shards.

    `dataset` needs `len()` and `shard_key(i)` (model.samples.GeoPixelDataset)."""
    g = torch.Generator().manual_seed(seed * 1000003 + epoch)
    by_shard: dict[tuple[int, int], list[int]] = {}
    for i in range(len(dataset)):
        by_shard.setdefault(dataset.shard_key(i), []).append(i)
    keys = sorted(by_shard)
    keys = [keys[j] for j in torch.randperm(len(keys), generator=g).tolist()]
    order: list[int] = []
    w = max(1, window_shards)
    for k in range(0, len(keys), w):
        window = [i for key in keys[k:k + w] for i in by_shard[key]]
        order += [window[j] for j in torch.randperm(len(window), generator=g).tolist()]
    return order


def rank_batches(order: list[int], rank: int, world: int, batch: int) -> list[list[int]]:
    """This rank's batches of an epoch. Every rank gets the same number of full batches (the tail that cannot
    be split evenly is dropped, as DistributedSampler + drop_last would)."""
    per_rank = len(order) // world // batch * batch
    mine = order[rank: per_rank * world: world]
    return [mine[i: i + batch] for i in range(0, len(mine), batch)]


class BatchList(torch.utils.data.Sampler):
    """A fixed list of batches (the resumable part of an epoch)."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
