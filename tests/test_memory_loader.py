"""The loader of a split held in memory (:class:`~mmcore.data.split_loader.MemoryLoader`)
gives the batches of a plain ``DataLoader`` over it and draws the same random numbers from
torch's generator, when the plain one does (on ``iter()``), so training is unchanged."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from mmcore.data.loader import ShardedBatchSampler
from mmcore.data.memory import as_is
from mmcore.data.split_loader import MemoryLoader
from tests import data_toy as toy
from tests.data_toy import TWO, setup, two_modality_rows, write_csv
from tests.test_data_memory import assert_same


def test_memory_loader_gives_a_plain_dataloaders_batches_and_draws(tmp_path):
    registry = toy.toy_registry()
    write_csv(tmp_path / "d.csv", [r for i, r in enumerate(two_modality_rows()) if i != 5])
    data = {"path": str(tmp_path / "d.csv"), "split_column": "split", "allow_missing": True,
            "in_memory": True}
    dm = setup(registry, data, tmp_path, modalities=TWO)
    loader = dm.loader("train", batch_size=3, shuffle=True, seed=4, epoch=1)
    assert isinstance(loader, MemoryLoader)
    memory = loader.dataset
    for start in (0, 2):
        def sampler(start=start):
            return ShardedBatchSampler(len(memory), 3, shuffle=True, seed=4, epoch=1,
                                       start_batch=start)

        fast = MemoryLoader(memory, batch_sampler=sampler(), collate_fn=as_is)
        plain = DataLoader(memory, batch_sampler=sampler(), collate_fn=as_is)
        assert len(fast) == len(plain) > 0
        got = {}
        for name, dl in (("fast", fast), ("plain", plain)):
            torch.manual_seed(7)
            batches = iter(dl)
            after_iter = torch.get_rng_state()  # drawn on iter(), before the first batch
            got[name] = (list(batches), after_iter, torch.get_rng_state())
        assert_same(got["fast"][0], got["plain"][0])
        assert torch.equal(got["fast"][1], got["plain"][1])
        assert torch.equal(got["fast"][2], got["plain"][2])
        torch.manual_seed(7)
        assert not torch.equal(got["plain"][1], torch.get_rng_state())  # it did draw


def test_memory_loader_builds_batches_ahead_within_its_byte_budget(tmp_path, monkeypatch):
    import mmcore.data.split_loader as split_loader

    registry = toy.toy_registry()
    write_csv(tmp_path / "d.csv", [r for i, r in enumerate(two_modality_rows()) if i != 5])
    data = {"path": str(tmp_path / "d.csv"), "split_column": "split", "allow_missing": True,
            "in_memory": True}
    dm = setup(registry, data, tmp_path, modalities=TWO)
    memory = dm.loader("train", batch_size=1, shuffle=True, seed=4).dataset
    plain = list(DataLoader(memory, batch_sampler=ShardedBatchSampler(
        len(memory), 1, shuffle=True, seed=4), collate_fn=as_is))
    assert len(plain) >= 7
    built = []
    fetch = memory.__getitems__

    def counted(indices):
        built.append(list(indices))
        return fetch(indices)

    monkeypatch.setattr(memory, "__getitems__", counted, raising=False)
    # the budget in rows (a batch is one): 1 (a batch at a time), 2 (two at most), everything
    for rows, most in ((1, 1), (2, 2), (10**6, len(plain))):
        monkeypatch.setattr(split_loader, "AHEAD_BYTES", rows * memory.row_bytes)
        built.clear()
        batches = iter(MemoryLoader(memory, batch_sampler=ShardedBatchSampler(
            len(memory), 1, shuffle=True, seed=4), collate_fn=as_is))
        got, ahead = [], []
        for batch in batches:
            got.append(batch)
            ahead.append(len(built) - len(got))  # built, not yet handed over
        assert ahead[0] == 0  # the first batch alone: a reader of one builds one
        if most < len(plain):  # groups up to the budget: at most one group less one ahead
            assert max(ahead) == most - 1
        else:  # groups of 1, 2, 4... batches
            assert ahead[:4] == [0, 1, 0, 3]
        assert_same(got, plain)
        assert len(built) == len(plain)
