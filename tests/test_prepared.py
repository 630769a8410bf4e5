"""mmcore.prepare: a spec's model and set-up data for one's own loop, as the trainer has them
before its first step, writing no run folder."""

from __future__ import annotations

import torch

import mmcore
from mmcore.batch import Batch
from tests import train_toy as toy


def test_prepare_gives_a_model_loaders_and_the_heads_loss(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where mmcore train would write runs/tiny
    data = toy.write_data(tmp_path / "data.csv")
    spec = toy.spec_dict(data, tmp_path / "cache", batch_size=8, seed=3)
    prepared = mmcore.prepare(spec, overrides=["train.batch_size=6"], registry=toy.registry())
    assert prepared.spec.train.batch_size == 6
    assert prepared.spec.heads["label"].options["classes"] == toy.CLASSES  # fitted on train
    batches = list(prepared.loader("train"))
    assert all(isinstance(b, Batch) for b in batches) and len(batches[0]) == 6
    assert sum(len(b) for b in batches) == prepared.data.num_rows("train")
    again = [b.index.tolist() for b in prepared.loader("train")]
    assert again == [b.index.tolist() for b in batches]  # a function of the seed and epoch
    assert again != [b.index.tolist() for b in prepared.loader("train", epoch=1)]
    assert [b.index.tolist() for b in prepared.loader("validation")] == sorted(
        b.index.tolist() for b in prepared.loader("validation"))  # in order
    loss = prepared.loss(prepared.model(batches[0].inputs), batches[0].targets)
    loss.backward()
    assert loss.dim() == 0 and any(p.grad is not None for p in prepared.model.parameters())
    other = mmcore.prepare(spec, registry=toy.registry())
    torch.testing.assert_close(  # the spec's seed builds the same initial weights
        next(other.model.parameters()), next(mmcore.prepare(spec, registry=toy.registry())
                                             .model.parameters()))
    assert not (tmp_path / "runs").exists()  # no run folder: only the data cache
