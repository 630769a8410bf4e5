"""Export bundles: every bundled example exports, its graph gives the eager model's outputs
(other batch sizes and lengths, with and without missing modalities), the runtime predicts
what ``mmcore.load`` predicts from the same raw rows, with the same errors, and a bundle is
checked before it is used."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime", reason="export tests need mmcore-torch[export] (onnxruntime)")
pytest.importorskip("onnxscript", reason="export tests need mmcore-torch[export] (onnxscript)")

import mmcore  # noqa: E402
from mmcore.cli import main  # noqa: E402
from mmcore.encoder import Encoder  # noqa: E402
from mmcore.errors import CheckpointError, DataError  # noqa: E402
from mmcore.evaluate.masking import hide  # noqa: E402
from mmcore.inference import runtime  # noqa: E402
from mmcore.inference.export import ExportError, export_run  # noqa: E402
from tests.conftest import train_example  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
#: example spec -> the data table its rows come from
SPECS = {
    "av_digits": ("av_digits/spec.py", "av_digits/data/degraded/pairs.csv"),
    "sign_language": ("sign_language/spec.py", "sign_language/data/signs.csv"),
    "text_sentiment": ("text_sentiment/spec.py", "text_sentiment/data/sentences.csv"),
    "custom_fusion": ("custom_fusion/spec.py", "av_digits/data/degraded/pairs.csv"),
}
#: overrides for an example's run: custom_fusion's tests are about the user's fusion, and
#: av_digits' bundle already exports the MiniRocket audio encoder (a minute and a half of
#: ONNX export on two busy cores), so its audio takes the reference CNN without the LSTM
OVERRIDES = {"custom_fusion": ("modalities.audio.options.encoder=reference",
                               "modalities.audio.options.lstm=false")}
TOLERANCE = 1e-5


class _OnFirstUse(dict):
    """name -> ``make(name)``, made on first use: a worker that runs only some of this
    module's tests trains and exports only the examples they read. A failure is kept and
    raised again for every later test reading that name, as a failing module fixture's is."""

    def __init__(self, make) -> None:
        super().__init__()
        self._make = make
        self._failed: dict[str, BaseException] = {}

    def __missing__(self, name: str) -> Path:
        if name in self._failed:
            raise self._failed[name]
        try:
            self[name] = self._make(name)
        except BaseException as exc:
            self._failed[name] = exc
            raise
        return self[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, av_digits_export) -> dict[str, Path]:
    """Each example trained for one epoch (av_digits: the session's, shared with the serving
    tests)."""
    root = tmp_path_factory.mktemp("runs")

    def train(name: str) -> Path:
        if name == "av_digits":
            return av_digits_export()[0]
        return train_example(EXAMPLES / SPECS[name][0], root / name, *OVERRIDES.get(name, ()))

    return _OnFirstUse(train)


@pytest.fixture(scope="module")
def bundles(runs, tmp_path_factory, av_digits_export) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")

    def export(name: str) -> Path:
        if name == "av_digits":
            return av_digits_export()[1]
        return export_run(runs[name], root / name, trust_code=True)

    return _OnFirstUse(export)


def _rows(name: str, n: int = 24) -> tuple[list[dict], Path]:
    table = EXAMPLES / SPECS[name][1]
    with table.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return rows[:n], table.parent


@pytest.mark.parametrize("name", list(SPECS))
def test_exported_graph_gives_the_models_outputs(name: str, runs, bundles) -> None:
    predictor = mmcore.load(runs[name], trust_code=True)
    loaded = runtime.load(bundles[name])
    manifest = json.loads((bundles[name] / "manifest.json").read_text())
    assert manifest["parity"]["max_abs_diff"] <= TOLERANCE
    dm = predictor._data_module(setup=True)
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for batch_size in (1, 5, 16):  # batch sizes and sequence lengths other than the traced
        for k, batch in enumerate(dm.loader("train", batch_size=batch_size, shuffle=False)):
            if k == 2:
                break
            for missing in (False, True):
                inputs = dict(batch.inputs)
                if missing and len(inputs) > 1:
                    first = sorted(inputs)[0]  # one modality absent from about half the rows
                    drop = torch.rand(len(batch), generator=generator) < 0.5
                    inputs[first] = hide(inputs[first], drop)
                with torch.no_grad():
                    eager = predictor.model(inputs)
                got = loaded.run(inputs)
                for head, value in got.items():
                    torch.testing.assert_close(torch.from_numpy(value), eager[head],
                                               atol=TOLERANCE, rtol=0)
                checked += 1
    assert checked == 12


@pytest.mark.parametrize("name", ["av_digits", "sign_language"])
def test_runtime_predicts_what_the_run_predicts(name: str, runs, bundles) -> None:
    rows, root = _rows(name)
    expected = mmcore.load(runs[name], trust_code=True).predict(rows, root=root)
    got = runtime.load(bundles[name]).predict(rows, root=root, batch_size=7)
    assert len(got) == len(expected) == len(rows)
    for a, b in zip(got, expected, strict=True):
        assert a.keys() == b.keys()
        for head in a:
            assert a[head]["label"] == b[head]["label"]
            assert abs(a[head]["probability"] - b[head]["probability"]) < 1e-5


def test_bad_rows_get_the_errors_predict_gives(runs, bundles) -> None:
    rows, root = _rows("av_digits", 12)
    predictor = mmcore.load(runs["av_digits"])
    loaded = runtime.load(bundles["av_digits"])
    cases = [
        dict(rows[9], image="no_such_file.png"),  # row 9 is in the second chunk of 7
        {k: v for k, v in rows[9].items() if k != "audio"},  # missing, not allowed
        {"id": "x"},  # no modality at all
    ]
    for bad in cases:
        batch = [*rows[:9], bad, *rows[10:]]
        with pytest.raises(DataError) as eager:
            predictor.predict(batch, root=root)
        with pytest.raises(DataError) as exported:
            loaded.predict(batch, root=root, batch_size=7)
        assert str(exported.value) == str(eager.value)
        assert "row 9" in str(exported.value)


def test_a_changed_or_incomplete_bundle_is_refused(bundles, tmp_path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundles["text_sentiment"], copy)
    graph = copy / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.onnx: SHA-256 does not match"):
        runtime.load(copy)
    shutil.copyfile(bundles["text_sentiment"] / "model.onnx", graph)
    runtime.load(copy)  # restored: loads again
    (copy / "extra.py").write_text("print('hello')\n")
    with pytest.raises(CheckpointError, match="extra.py: not listed"):
        runtime.load(copy)
    (copy / "extra.py").unlink()
    state = next((copy / "modalities" / "text").iterdir())
    state.unlink()
    with pytest.raises(CheckpointError, match="listed in manifest.json but missing"):
        runtime.load(copy)
    with pytest.raises(CheckpointError, match="not an export bundle"):
        runtime.load(tmp_path)


def test_torch_export_bundles_need_trust_and_predict_the_same(runs, tmp_path) -> None:
    out = export_run(runs["text_sentiment"], tmp_path / "pt2", format="torch-export")
    with pytest.raises(CheckpointError, match="trust_code=True"):
        runtime.load(out)
    loaded = runtime.load(out, trust_code=True)
    shape = next(i["shape"] for i in loaded.manifest["inputs"] if i["name"] == "text.values")
    assert shape == ["batch", "text.time"]  # LSTMs exported as while loops: any length
    rows, root = _rows("text_sentiment")
    rows.append(dict(rows[0], text=" ".join(["good"] * 60)))  # longer than any traced row
    expected = mmcore.load(runs["text_sentiment"]).predict(rows, root=root)
    got = loaded.predict(rows, root=root)
    for a, b in zip(got, expected, strict=True):
        assert a["sentiment"]["label"] == b["sentiment"]["label"]
        assert abs(a["sentiment"]["probability"] - b["sentiment"]["probability"]) < 1e-5


def test_an_axis_the_graph_fixed_is_padded_to_and_never_exceeded(bundles) -> None:
    """A graph with a fixed time axis (a model torch.export cannot keep dynamic) gets its
    inputs padded to that length, and a longer row is a clear error."""
    loaded = runtime.load(bundles["text_sentiment"])
    seen = []
    manifest = json.loads(json.dumps(loaded.manifest))
    for spec in manifest["inputs"]:
        if spec["name"] in ("text.values", "text.mask"):
            spec["shape"][1] = 40
    fixed = runtime.Runtime(loaded.bundle, manifest, loaded.modalities, loaded.heads,
                            lambda arrays: seen.append(arrays) or loaded._graph(arrays))
    rows, root = _rows("text_sentiment", 4)
    assert [p["sentiment"]["label"] for p in fixed.predict(rows)] == \
        [p["sentiment"]["label"] for p in loaded.predict(rows)]
    assert seen[0][0].shape[1] == 40 and not seen[0][2][:, 35:].any()  # padding is masked
    with pytest.raises(DataError, match="more than the 40 this torch-export graph"):
        fixed.predict([dict(rows[0], text=" ".join(["good"] * 60))])


def test_the_runtime_imports_neither_the_trainer_nor_the_data_layer(bundles) -> None:
    rows, root = _rows("av_digits", 4)
    code = (
        "import json, sys\n"
        "from mmcore.inference import runtime\n"
        f"r = runtime.load({str(bundles['av_digits'])!r})\n"
        f"print(json.dumps(r.predict(json.loads({json.dumps(rows)!r}), root={str(root)!r})))\n"
        "bad = [m for m in sys.modules if m.startswith(('mmcore.train', 'mmcore.data', "
        "'mmcore.inference.predict', 'datasets', 'pyarrow'))]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads(done.stdout.splitlines()[-1])) == 4


def test_export_refuses_what_it_cannot_keep(runs, tmp_path, capsys) -> None:
    # a run whose fusion is its spec file's is loaded only when trusted, as for evaluate
    code = main(["export", str(runs["custom_fusion"]), "-o", str(tmp_path / "b")])
    assert code == 2 and "trust" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    code = main(["export", str(runs["text_sentiment"]), "-o", str(tmp_path / "b")])
    assert code == 0 and "largest difference" in capsys.readouterr().out
    code = main(["export", str(runs["text_sentiment"]), "-o", str(tmp_path / "b")])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    assert main(["export", str(runs["text_sentiment"]), "-o", str(tmp_path / "b"),
                 "--overwrite"]) == 0


def test_a_model_that_does_not_export_faithfully_is_an_error(runs, tmp_path, tmp_path_factory,
                                                             monkeypatch) -> None:
    """A graph that differs from the model (here: a forward that gives other outputs while it
    is being captured, as a Python-side branch the trace freezes would) is caught by the parity
    check, and nothing is written. On text_sentiment, the example quickest to export
    (av_digits' MiniRocket transform takes about a minute of CPU)."""
    from mmcore.fusions.concat import ConcatFusion  # text_sentiment's fusion
    from mmcore.layers import capturing

    run = tmp_path_factory.mktemp("unfaithful") / "run"  # the shared run stays as it is
    shutil.copytree(runs["text_sentiment"], run)

    original = ConcatFusion.forward

    def unfaithful(self, features):
        out = original(self, features)
        return out * 2 if capturing() else out

    monkeypatch.setattr(ConcatFusion, "forward", unfaithful)
    with pytest.raises(ExportError, match="differs from the model"):
        export_run(run, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.iterdir())  # no half-written bundle either


FUSIONS = ["attention", "concat", "film", "gated", "late", "low_rank_tensor", "rnn", "tensor",
           "weighted"]


def test_the_fusion_list_is_every_registered_fusion() -> None:
    from mmcore.plugins.default import get_registry

    assert set(FUSIONS) == set(get_registry().names("fusion"))


class _StandIn(Encoder):
    """A cheap encoder in place of a trained one: the same output size and kind (a sequence
    with its mask, or pooled), from one linear map of the batch's values per step. The
    fusions see only features, and exporting the real encoders (four LSTMs, a CNN) is what
    made each export here take half a minute; the bundles above export them."""

    def __init__(self, real: Encoder, width: int) -> None:
        super().__init__(real.output_size, sequence=real.sequence)
        self.proj = torch.nn.Linear(width, real.output_size)

    def forward(self, batch):
        values = batch.values.float()
        values = values.unsqueeze(-1) if values.dim() == 2 else values.flatten(2)
        return self.features(torch.tanh(self.proj(values)), batch.mask, batch)


def _sign_language_parts(runs) -> tuple:
    """The sign_language run's predictor, an example batch, its layout and stand-ins for its
    encoders (:class:`_StandIn`: one of them gives sequences, the others pooled features)."""
    from mmcore.inference.export import bundle
    from mmcore.inference.export.graph import InputLayout

    predictor = mmcore.load(runs["sign_language"], trust_code=True)
    example = bundle._example_batch(predictor, None, longest=False)
    torch.manual_seed(0)
    encoders = {}
    for name, real in predictor.model.encoders.items():
        values = example[name].values
        encoders[name] = _StandIn(real, values.flatten(2).shape[-1] if values.dim() > 2 else 1)
    assert {e.sequence for e in encoders.values()} == {True, False}
    return predictor, example, InputLayout.of(example), encoders


def _export_checked(model, layout, example, path: Path) -> None:
    """``model`` exported to ONNX and passing the export's own parity check (missing
    modalities, one row, longer sequences)."""
    from mmcore.inference.export import bundle
    from mmcore.inference.export.graph import GraphModel
    from mmcore.layers import masked_rnns

    graph = GraphModel(model, layout).eval()
    with masked_rnns(), bundle.rnn_decompositions(), torch.no_grad():
        shapes = bundle._export_onnx(graph, layout, example, path)
    parity = bundle._check_parity(path, "onnx", graph, layout, example,
                                  bundle._inputs(layout, shapes), TOLERANCE)
    assert parity["max_abs_diff"] <= TOLERANCE, path.name


@pytest.mark.parametrize("name", FUSIONS)
def test_every_built_in_fusion_exports(name: str, runs, tmp_path) -> None:
    """Each built-in fusion over the sign_language modalities (stand-in encoders giving
    sequences and pooled features), its heads rebuilt for the fusion's size and the model
    composed as a spec naming it composes it (late: LateFusionModel): the export's own
    parity check (missing modalities, one row, longer sequences) passes."""
    from mmcore.model import compose_model
    from mmcore.plugins.default import get_registry

    predictor, example, layout, encoders = _sign_language_parts(runs)
    sizes = {n: e.output_size for n, e in encoders.items()}
    registry = get_registry()
    options = {"condition": "hand"} if name == "film" else {}
    fusion = registry.get("fusion", name).load()(dict(sizes), **options)
    heads = {h: registry.get("head", s.kind).load()(fusion.output_size, s.target, **s.options)
             for h, s in predictor.spec.heads.items()}
    model = compose_model(encoders, fusion, heads).eval()
    _export_checked(model, layout, example, tmp_path / f"{name}.onnx")


def test_an_ensemble_exports(runs, tmp_path) -> None:
    """``train.ensemble``: two members over the sign_language modalities (stand-in encoders,
    the ``concat`` fusion, the run's heads rebuilt for its size; the second's weights moved)
    export as one graph whose outputs are their average (the export's parity check, with
    missing modalities, one row and longer sequences)."""
    import copy

    from mmcore.fusions.concat import ConcatFusion
    from mmcore.model import EnsembleModel, compose_model
    from mmcore.plugins.default import get_registry

    predictor, example, layout, encoders = _sign_language_parts(runs)
    fusion = ConcatFusion({n: e.output_size for n, e in encoders.items()})
    registry = get_registry()
    heads = {h: registry.get("head", s.kind).load()(fusion.output_size, s.target, **s.options)
             for h, s in predictor.spec.heads.items()}
    first = compose_model(encoders, fusion, heads).eval()
    other = copy.deepcopy(first)
    with torch.no_grad():
        for param in other.heads.parameters():
            param.add_(0.5 * torch.randn_like(param))
    model = EnsembleModel([first, other]).eval()
    _export_checked(model, layout, example, tmp_path / "ensemble.onnx")
    with torch.no_grad():
        got = model(example)
        single = [m(example) for m in model.members]
    for name, value in got.items():
        assert not torch.equal(value, single[0][name])  # the average, not the first member
