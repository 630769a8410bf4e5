"""Behaviour of every built-in fusion: missing modalities, padding, gradients, and that it fuses.

Fusions are built through the registry, exactly as a spec builds them, with small options so
the whole file runs in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import Tensor

from mmcore.batch import Features
from mmcore.fusion import Fusion, PerModalityFusion
from mmcore.heads.classification import ClassificationHead
from mmcore.plugins import get_registry
from mmcore.spec.options import keyword_arguments
from mmcore.testing import FusionContract
from mmcore.testing.fusion_contract import make_features


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run single-threaded: on tiny tensors, threads on a busy machine cost far more than they
    save (this file takes several times longer with torch's default thread count there)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# name -> options: one case per built-in fusion, plus variants whose code paths differ.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "concat": ("concat", {"size": 16, "hidden": 16, "dropout": 0.0}),
    "weighted": ("weighted", {"size": 16}),
    "weighted-dynamic-mlp": ("weighted", {"size": 16, "dynamic": True, "hidden": [16]}),
    "rnn": ("rnn", {"hidden": 16, "project": 16, "length": 6}),
    "rnn-gru-bi-2layers": (
        "rnn",
        {"cell": "gru", "hidden": 8, "project": 16, "layers": 2, "bidirectional": True},
    ),
    "rnn-modality-steps": ("rnn", {"hidden": 16, "project": 16, "steps": "modalities"}),
    "gated": ("gated", {"size": 16}),
    "attention": (
        "attention",
        {"d_model": 16, "heads": 2, "layers": 1, "feedforward": 32, "dropout": 0.0},
    ),
    "tensor": ("tensor", {"project": 4, "size": 16, "hidden": 32, "dropout": 0.0}),
    "low_rank_tensor": ("low_rank_tensor", {"rank": 4, "size": 16}),
    "film": ("film", {"size": 16}),
    "film-no-condition-output": ("film", {"size": 16, "include_condition": False}),
    "late": ("late", {"size": 8, "hidden": 16, "dropout": 0.0}),
    "late-learned": ("late", {"size": 8, "hidden": 16, "dropout": 0.0, "mode": "learned"}),
}

SIZES = {"audio": 6, "image": 5, "text": 3}


def build(case: str, input_sizes: Mapping[str, int]) -> Fusion:
    name, options = CASES[case]
    registration = get_registry().get("fusion", name)
    checked = registration.load_options().model_validate(options)
    return registration.load()(dict(input_sizes), **keyword_arguments(checked))


fuse = FusionContract.fuse


# Every built-in fusion passes the contract a third-party fusion is held to
# (mmcore.testing.FusionContract: absent rows, padding, finiteness, gradients, determinism).
for _case, (_name, _options) in CASES.items():
    _cls = type(f"TestContract_{_case.replace('-', '_')}", (FusionContract,),
                {"fusion": _name, "options": _options, "input_sizes": SIZES})
    globals()[_cls.__name__] = _cls


def xor_task(n: int, seed: int) -> tuple[dict[str, Features], Tensor]:
    """Two modalities, each a random ±1 bit (along a random direction) plus noise.

    The label is bit_a XOR bit_b: either modality alone predicts it at chance, so only a model
    that combines them multiplicatively (or through a nonlinearity on both) learns it.
    """
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (n, 2), generator=g)
    directions = torch.nn.functional.normalize(
        torch.randn(2, 4, generator=torch.Generator().manual_seed(123)), dim=1
    )
    features = {}
    for i, m in enumerate(["a", "b"]):
        signal = (2 * bits[:, i : i + 1] - 1).float() * directions[i]
        values = signal + 0.3 * torch.randn(n, 4, generator=g)
        features[m] = Features(values, torch.ones(n, dtype=torch.bool))
    return features, bits[:, 0] ^ bits[:, 1]


def train_on_xor(case: str, steps: int = 150, absent: str | None = None) -> float:
    """Held-out accuracy of fusion + a small classification head trained on the XOR task.

    ``absent``: a modality marked absent in every sample, training and test alike.
    """
    torch.manual_seed(0)
    train, train_y = xor_task(512, seed=1)
    test, test_y = xor_task(512, seed=2)
    if absent is not None:
        for features in (train, test):
            f = features[absent]
            features[absent] = Features(f.values, torch.zeros_like(f.present))
    fusion = build(case, {"a": 4, "b": 4})
    head = ClassificationHead(fusion.output_size, "label", classes=[0, 1], hidden=[16], dropout=0)
    params = [*fusion.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)

    def logits(features: dict[str, Features]) -> Tensor:
        fused = fusion(features)
        if isinstance(fusion, PerModalityFusion):  # as LateFusionModel composes it
            return fusion.combine({m: head(z) for m, z in fused.items()}, features)
        return head(fused)

    for _ in range(steps):
        optimizer.zero_grad()
        head.loss(logits(train), train_y).backward()
        optimizer.step()
    fusion.eval()
    head.eval()
    with torch.no_grad():
        return head.metrics(logits(test), test_y)["accuracy"]


# One case per fusion: the variants differ in code paths the tests above cover, not in
# whether they can fuse.
INTERACTING = sorted({name for name, _ in CASES.values()} - {"late"})


@pytest.mark.parametrize("case", INTERACTING)
def test_fusion_learns_xor(case: str) -> None:
    accuracy = train_on_xor(case)
    assert accuracy > 0.9, f"{case} reached only {accuracy:.3f} on XOR"


@pytest.mark.parametrize("absent", ["a", "b"])
def test_xor_cannot_be_learned_from_one_modality(absent: str) -> None:
    """The task is fair: what the fusions learn above needs both modalities."""
    accuracy = train_on_xor("concat", absent=absent)
    assert accuracy < 0.65, f"XOR learned without {absent}: {accuracy:.3f}"


@pytest.mark.parametrize("case", ["late", "late-learned"])
def test_late_fusion_cannot_learn_xor(case: str) -> None:
    # Averaged per-modality predictions are additive, f(a) + g(b). On balanced XOR the
    # cross-entropy optimum of such a model is a constant (each bit alone says nothing about
    # the label), so training ends near chance; no additive model exceeds 75% (3 of 4 cells).
    accuracy = train_on_xor(case)
    assert accuracy < 0.65, f"{case} reached {accuracy:.3f}: late fusion should not model XOR"


@pytest.mark.parametrize("case", sorted(CASES))
def test_fusions_run_under_bfloat16_autocast(case: str) -> None:
    """``train.precision="bf16"`` runs the fusion under autocast."""
    torch.manual_seed(0)
    fusion = build(case, SIZES)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fuse(fusion, make_features(SIZES, "mixed"))
    assert torch.isfinite(out).all()
    out.float().sum().backward()
