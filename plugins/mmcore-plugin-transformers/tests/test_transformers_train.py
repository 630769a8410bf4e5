"""Fine-tuning tiny pretrained backbones end to end: text + image through the trainer,
prediction with the original folders deleted, frozen layers, weights read from the folder."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import mmcore
from mmcore.errors import DataError
from mmcore.run import checkpoint as ck

if importlib.util.find_spec("transformers") is None:  # found, not imported: collecting is quick
    pytest.skip("needs transformers (pip install mmcore-plugin-transformers)",
                allow_module_level=True)

from mmcore_plugin_transformers.testing import tiny_image_model, tiny_text_model  # noqa: E402

GOOD = ["good phone", "great screen", "love it", "works fine", "nice battery"]
BAD = ["bad phone", "terrible screen", "hate it", "broken and slow", "battery died"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def project(tmp_path) -> Path:
    """A CSV of 60 reviews with a photo each (bright for good, dark for bad) and the two
    tiny backbones under ``models/``."""
    tiny_text_model(tmp_path / "models" / "bert")
    tiny_image_model(tmp_path / "models" / "vit")
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    with open(tmp_path / "reviews.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["review", "photo", "label"])
        for i in range(60):
            good = i % 2 == 0
            text = (GOOD if good else BAD)[i // 2 % 5]
            base = 200 if good else 40
            pixels = np.clip(rng.normal(base, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / f"{i}.png")
            writer.writerow([text, f"photos/{i}.png", "pos" if good else "neg"])
    return tmp_path


def _spec(project: Path, text: dict | None = None, photo: dict | None = None, **train):
    return {
        "name": "reviews",
        "data": {"path": str(project / "reviews.csv"), "cache_dir": str(project / "cache"),
                 "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "modalities": {
            "review": {"plugin": "hf_text", "column": "review",
                       "options": {"pretrained": "models/bert", "pooling": "cls"}, **(text or {})},
            "photo": {"plugin": "hf_image", "column": "photo",
                      "options": {"pretrained": "models/vit", "size": 8}, **(photo or {})},
        },
        "fusion": {"name": "concat", "options": {"size": 16}},
        "heads": {"label": {"target": "label"}},
        "train": {"epochs": 3, "batch_size": 8, "lr": 3e-3, "seed": 0, "progress": False,
                  "callbacks": [], **train},
    }


def _train(spec: dict, out: Path) -> dict:
    trainer = mmcore.Trainer(spec, output=out, quiet=True, plots=False, report=False)
    return trainer.fit()


def _backbone(weights: dict, modality: str) -> dict:
    prefix = f"encoders.{modality}.backbone."
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def test_train_then_predict_with_the_pretrained_folders_gone(project, tmp_path):
    final = _train(_spec(project), tmp_path / "run")
    assert final["test"]["label.accuracy"] >= 0.75  # both modalities carry the label
    state = tmp_path / "run" / "modalities"
    assert (state / "review" / "config.json").is_file()
    assert (state / "review" / "tokenizer.json").is_file()
    assert (state / "photo" / "preprocessor_config.json").is_file()
    assert not list(state.rglob("*.safetensors"))  # weights live in the checkpoint only

    rows = [{"review": "great phone", "photo": str(project / "photos" / "0.png")},
            {"review": "terrible and slow", "photo": str(project / "photos" / "1.png")}]
    before = mmcore.load(tmp_path / "run").predict(rows)
    shutil.rmtree(project / "models")
    after = mmcore.load(tmp_path / "run").predict(rows)
    assert [r["label"]["label"] for r in after] == ["pos", "neg"]
    assert after == before


def _pretrained(cls, options, folder: Path) -> dict:
    """The backbone's weights as the plugin loads them from ``folder`` (module names may
    differ from the file's keys: transformers 5 renames some on load)."""
    modality = cls("m", options(pretrained=str(folder)))
    modality.fit([])
    return modality.build_encoder().backbone.state_dict()


def test_training_starts_from_the_folders_weights_and_freeze_keeps_them(project, tmp_path):
    from mmcore_plugin_transformers.image import PretrainedImage
    from mmcore_plugin_transformers.options import ImageOptions, TextOptions
    from mmcore_plugin_transformers.text import PretrainedText

    _train(_spec(project, text={"freeze": True}, photo={"options": {
        "pretrained": "models/vit", "size": 8, "freeze_layers": 1}}), tmp_path / "run")
    weights = ck.read_checkpoint(ck.latest_checkpoint(tmp_path / "run" / ck.CHECKPOINTS)).model
    text = _backbone(weights, "review")
    pretrained = _pretrained(PretrainedText, TextOptions, project / "models" / "bert")
    assert text.keys() == pretrained.keys()
    assert all(torch.equal(v, pretrained[k]) for k, v in text.items())
    file = load_file(str(project / "models" / "bert" / "model.safetensors"))
    assert torch.equal(text["embeddings.word_embeddings.weight"],
                       file["embeddings.word_embeddings.weight"])  # the folder's, not random
    assert not any(k.startswith("pooler.") for k in text)  # mmcore pools; the pooler is dropped

    photo = _backbone(weights, "photo")
    vit = _pretrained(PretrainedImage, ImageOptions, project / "models" / "vit")
    # "encoder.layer.0." in transformers 4, "layers.0." in 5
    fixed = [k for k in photo if k.startswith("embeddings.") or re.search(r"layers?\.0\.", k)]
    trained = [k for k in photo if re.search(r"layers?\.1\.", k)]
    assert fixed and all(torch.equal(photo[k], vit[k]) for k in fixed)
    assert trained and any(not torch.equal(photo[k], vit[k]) for k in trained)


def test_a_missing_folder_is_a_clear_error(project, tmp_path):
    spec = _spec(project, text={"options": {"pretrained": "models/nothing-here"}})
    with pytest.raises(DataError, match=r"pretrained='models/nothing-here' names no folder.*"
                                        r"allow_download"):
        _train(spec, tmp_path / "run")


@pytest.mark.parametrize("broken, words", [
    ("missing", "pretrained='models/nothing-here' names no folder"),
    ("no config", "has no config.json"),
    ("bad config", "config.json is not readable JSON"),
])
def test_validate_checks_the_pretrained_folders(project, tmp_path, capsys, broken, words):
    from mmcore.cli import main

    text: dict = {"options": {"pretrained": "models/bert", "pooling": "cls"}}
    if broken == "missing":
        text = {"options": {"pretrained": "models/nothing-here"}}
    elif broken == "no config":
        (project / "models" / "bert" / "config.json").unlink()
    else:
        (project / "models" / "bert" / "config.json").write_text("{not json")
    spec_file = tmp_path / "spec.py"
    spec_file.write_text(f"spec = {_spec(project, text=text)!r}\n")
    assert main(["validate", str(spec_file)]) == 2
    err = capsys.readouterr().err
    assert "modalities.review.options: modality 'review'" in err and words in err
    assert "modalities.photo" not in err  # the other folder is fine


def test_plugins_and_validate_do_not_import_transformers(project, tmp_path):
    spec_file = tmp_path / "spec.py"
    spec_file.write_text(f"spec = {_spec(project)!r}\n")
    code = (
        "import sys\n"
        "from mmcore.cli import main\n"
        f"assert main(['plugins']) == 0\n"
        f"assert main(['validate', {str(spec_file)!r}]) == 0\n"
        "loaded = [m for m in ('transformers', 'torch') if m in sys.modules]\n"
        "assert 'transformers' not in loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("file,doc,match", [
    ("config.json", {"auto_map": {"AutoConfig": "code.Config", "AutoModel": "code.Model"}},
     "auto_map"),
    ("tokenizer_config.json", {"tokenizer_class": "AutoModel"}, "tokenizer_class='AutoModel'"),
    ("tokenizer_config.json", {"tokenizer_class": "AutoTokenizer"}, "PreTrainedTokenizerBase"),
    ("tokenizer_config.json", {"tokenizer_class": "os"}, "tokenizer_class='os'"),
])
def test_a_folder_that_would_run_code_is_refused_for_training_and_in_a_run(
        project, tmp_path, file, doc, match):
    from mmcore_plugin_transformers.options import TextOptions
    from mmcore_plugin_transformers.text import PretrainedText

    from mmcore.errors import CheckpointError

    run = tmp_path / "run"
    _train(_spec(project, epochs=1), run)
    marker = tmp_path / "ran"
    for folder, error in ((project / "models" / "bert", DataError),
                          (run / "modalities" / "review", CheckpointError)):
        # the code an auto_map would name, beside it
        (folder / "code.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        path = folder / file
        data = json.loads(path.read_text()) if path.is_file() else {}
        path.write_text(json.dumps({**data, **doc}))
        modality = PretrainedText("review", TextOptions(
            pretrained=str(project / "models" / "bert")))
        with pytest.raises(error, match=re.escape(match)):
            if error is DataError:
                modality.fit([])
            else:
                modality.load_state(folder)
    with pytest.raises(CheckpointError, match=re.escape(match)):
        mmcore.load(run)
    assert not marker.exists()
