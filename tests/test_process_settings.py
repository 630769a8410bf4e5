"""What a run sets in the process while it trains (torch's threads, subnormal floats flushed to
zero) and puts back afterwards."""

from __future__ import annotations

import pytest
import torch

import mmcore
from mmcore.spec import TrainSpec


def test_thread_policy_never_oversubscribes(monkeypatch):
    from mmcore.train import settings

    monkeypatch.setattr(settings, "usable_cores", lambda: 8)
    assert settings.resolve_threads("auto", num_workers=0) == 8
    assert settings.resolve_threads("auto", num_workers=3) == 5
    assert settings.resolve_threads("auto", num_workers=0, local_processes=4) == 2
    assert settings.resolve_threads("auto", num_workers=4, local_processes=4) == 1
    assert settings.resolve_threads("auto", num_workers=0, current=1) == 1  # OMP_NUM_THREADS=1
    assert settings.resolve_threads(3, num_workers=7) == 3  # a number is taken as given


def test_fit_applies_train_threads_and_restores_them(tmp_path, monkeypatch):
    from mmcore.spec import validate_spec
    from mmcore.train import Trainer
    from tests import train_toy as toy

    reg = toy.registry()
    data = toy.write_data(tmp_path / "data.csv")
    spec = validate_spec(toy.spec_dict(data, tmp_path / "cache", epochs=1, threads=1),
                         registry=reg)
    calls = []
    real, outside = torch.set_num_threads, torch.get_num_threads()
    real(2)  # not train.threads, whatever the process started with (a test worker: 1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    try:
        Trainer(spec, output=tmp_path / "run", registry=reg, plots=False, quiet=True).fit()
        assert calls[0] == 1 and calls[-1] == 2
        assert torch.get_num_threads() == 2
    finally:
        real(outside)


@pytest.mark.parametrize("flush", [True, False])
def test_fit_flushes_subnormals_as_train_flush_denormal_says_and_restores(tmp_path, flush):
    from mmcore.spec import validate_spec
    from mmcore.train import Trainer
    from mmcore.train.run_setup import denormals_flushed
    from tests import train_toy as toy

    before = denormals_flushed()
    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(before)
    if not supported:
        pytest.skip("torch cannot flush subnormal floats on this CPU")
    reg = toy.registry()
    data = toy.write_data(tmp_path / "data.csv")
    spec = validate_spec(toy.spec_dict(data, tmp_path / "cache", epochs=2), registry=reg,
                         overrides=[f"train.flush_denormal={str(flush).lower()}"])
    seen = []

    class Watch:
        @mmcore.hookimpl
        def on_epoch_end(self, trainer, epoch, metrics):
            seen.append(denormals_flushed())

    reg.pm.register(Watch(), name="watch")
    try:
        torch.set_flush_denormal(not flush)  # the process's own setting, put back afterwards
        Trainer(spec, output=tmp_path / "run", registry=reg, plots=False, quiet=True).fit()
        assert seen == [flush] * 2
        assert denormals_flushed() is (not flush)
    finally:
        torch.set_flush_denormal(before)
    assert TrainSpec().flush_denormal is True  # the default
