"""``mmcore validate`` runs every check ``mmcore train`` makes before training: the device and
precision, the monitor metric, the data files and columns (``--no-data`` skips the last)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmcore.cli import main

ROWS = "text,label,split,speaker\nnice,pos,train,a\nbad,neg,train,b\nok,pos,validation,a\n"


def write_spec(folder, data=None, modality=None, train=None, extra_csv=None):
    (folder / "data.csv").write_text(extra_csv or ROWS)
    spec = {
        "data": data or {"path": "data.csv", "split_column": "split"},
        "modalities": {"words": modality or {"plugin": "text", "column": "text"}},
        "heads": {"label": {"kind": "classification", "target": "label"}},
        "train": train or {},
    }
    path = folder / "spec.py"
    path.write_text(f"spec = {spec!r}\n")
    return path


def validate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["validate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_valid_spec_is_still_valid(tmp_path, capsys):
    code, out, err = validate(capsys, write_spec(tmp_path))
    assert code == 0, err
    assert "valid" in out and "--no-data" not in out


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        (["train.precision=fp16", "train.device=cpu"], "train.precision", "fp16 needs a CUDA"),
        (["train.monitor=label.acc"], "train.monitor", "label.accuracy"),
        (["data.path=missing.csv"], "data.path", "does not exist"),
        (["modalities.words.column=body"], "'body' (modalities.words.column)", "no column"),
        (["heads.label.target=y"], "'y' (heads.label.target)", "no column"),
        (["data.split_column=fold"], "'fold' (data.split_column)", "no column"),
    ],
)
def test_each_setup_problem_is_reported(tmp_path, capsys, overrides, field, words):
    code, out, err = validate(capsys, write_spec(tmp_path), *overrides)
    assert code == 2 and "valid." not in out
    assert field in err and words in err


def test_a_missing_group_column_is_reported(tmp_path, capsys):
    data = {"path": "data.csv", "split": {"group_column": "signer"}}
    code, _, err = validate(capsys, write_spec(tmp_path, data=data))
    assert code == 2 and "'signer' (data.split.group_column)" in err


def test_cuda_without_cuda_is_reported(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = validate(capsys, write_spec(tmp_path), "train.device=cuda")
    assert code == 2 and "train.device: 'cuda' requested but torch sees no CUDA" in err


def test_a_sequence_modalitys_context_column_is_checked(tmp_path, capsys):
    pytest.importorskip("mmcore_plugin_gesture")
    rows = 'seq,label,split\n"[[1.0], [2.0]]",pos,train\n"[[3.0], [1.0]]",neg,validation\n'
    modality = {
        "plugin": "gesture",
        "column": "seq",
        "options": {"transforms": [{"op": "standardize", "by": "signer"}]},
    }
    code, _, err = validate(capsys, write_spec(tmp_path, modality=modality, extra_csv=rows))
    assert code == 2 and "'signer' (modalities.words.options)" in err


def test_all_problems_are_reported_at_once(tmp_path, capsys):
    spec = write_spec(tmp_path, train={"precision": "fp16", "device": "cpu",
                                       "monitor": "label.nope"})
    code, _, err = validate(capsys, spec, "heads.label.target=y")
    assert code == 2
    assert "train.precision" in err and "train.monitor" in err and "heads.label.target" in err


def test_no_data_skips_the_data_checks_and_imports_no_torch(tmp_path):
    spec = write_spec(tmp_path)
    code = (
        "import sys\n"
        "from mmcore.cli import main\n"
        f"assert main(['validate', {str(spec)!r}, 'data.path=missing.csv', '--no-data']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "data not checked" in result.stdout


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, 2.0, 3.0], "heads.label.options: class_weights has 3 value(s) but there are 2 "
                          "classes ['neg', 'pos']"),
        ({"pos": 2.0, "neutral": 1.0}, "heads.label.options: class_weights names 'neutral', "
                                       "which is not a class; the classes are ['neg', 'pos']"),
    ],
)
def test_class_weights_that_do_not_fit_the_classes_in_the_data(tmp_path, capsys, weights,
                                                               message):
    # the classes come from the data: only the train split's targets can tell
    spec = write_spec(tmp_path)
    override = f"heads.label.options.class_weights={json.dumps(weights)}"
    code, out, err = validate(capsys, spec, override)
    assert code == 2 and "valid." not in out
    assert message in err
    code = main(["train", str(spec), override, "--output", str(tmp_path / "run")])
    assert code == 2
    assert message in capsys.readouterr().err


# -- issue 29: "did you mean" and overrides that would add a modality or head -------------------
@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize(
    ("override", "field", "suggested"),
    [
        ("train.epoch=3", "train.epoch", "'epochs'"),
        ("data.splt_column=split", "data.splt_column", "'split_column'"),
        ("modalities.words.colum=text", "modalities.words.colum", "'column'"),
        ("heads.label.targt=label", "heads.label.targt", "'target'"),
        ("modalities.words.options.max_lenght=8", "modalities.words.options.max_lenght",
         "'max_length'"),
    ],
)
def test_unknown_fields_and_options_name_the_closest(tmp_path, capsys, command, override, field,
                                                     suggested):
    code = main([command, str(write_spec(tmp_path)), override,
                 *(["--output", str(tmp_path / "run")] if command == "train" else [])])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{field}: unknown option (not accepted here); did you mean {suggested}?" in err
    assert not (tmp_path / "run" / "model.pt").exists()


def test_python_spec_errors_name_the_closest_field():
    import mmcore
    from mmcore.errors import SpecError

    with pytest.raises(SpecError) as info:
        mmcore.Spec(data={"path": "x.csv"}, modalities={"t": {"column": "text"}},
                    heads={"label": {"target": "label"}}, train={"epoch": 3, "lrr": 0.1})
    assert "train.epoch: unknown option (not accepted here); did you mean 'epochs'?" in str(
        info.value)
    assert "did you mean 'lr'?" in str(info.value)


@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("modalities.wrds.options.x=1", "no modality 'wrds' (modalities: 'words')"),
        ("modalities.image={\"plugin\": \"image\", \"column\": \"image\"}", "no modality 'image'"),
        ("heads.lable.weight=2", "no head 'lable' (heads: 'label')"),
    ],
)
def test_an_override_cannot_add_a_modality_or_head(tmp_path, capsys, command, override, words):
    code = main([command, str(write_spec(tmp_path)), override,
                 *(["--output", str(tmp_path / "run")] if command == "train" else [])])
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in err and "cannot add one" in err
    if "wrds" in override:
        assert "did you mean 'words'?" in err
    if "lable" in override:
        assert "did you mean 'label'?" in err
    assert not (tmp_path / "run").exists()


def test_an_override_reaches_a_modality_declared_in_a_list(tmp_path):
    from mmcore.spec.load import apply_overrides

    data = {"modalities": [{"name": "words", "column": "text"}]}
    out = apply_overrides(data, ["modalities.words.column=body"])
    assert out["modalities"] == {"words": {"name": "words", "column": "body"}}


# -- issue 29: split sizes and why a split is empty ---------------------------------------------
SESSIONS = "text,label,session\n" + "".join(
    f"w{i},{'abc'[i % 3]},{'abc'[i % 3]}\n" for i in range(30)  # each class in its own session
)


def test_validate_prints_the_split_sizes(tmp_path, capsys):
    code, out, err = validate(capsys, write_spec(tmp_path))
    assert code == 0, err
    assert "splits: train 2 rows, validation 1" in out
    assert "warning" not in err

    data = {"path": "data.csv", "split": {"validation": 0.2, "test": 0.2}}
    code, out, err = validate(capsys, write_spec(tmp_path, data=data, extra_csv=SESSIONS))
    assert code == 0, err
    assert "splits: train 18 rows, validation 6, test 6" in out and "warning" not in err


def test_a_group_split_that_cannot_give_a_test_split_is_a_warning_saying_why(tmp_path, capsys):
    data = {"path": "data.csv", "split": {"group_column": "session", "test": 0.2}}
    code, out, err = validate(capsys, write_spec(tmp_path, data=data, extra_csv=SESSIONS))
    assert code == 0, err
    assert "splits: train 30 rows" in out
    for name in ("validation", "test"):
        assert (f"warning: no {name} split: every group of data.split.group_column='session' "
                "holds all the rows of some class of 'label'") in err


@pytest.mark.parametrize(
    ("split", "words"),
    [
        ({"group_column": "speaker", "validation": 0.25, "test": 0.0},
         "no validation split: the smallest group of "
         "data.split.group_column='speaker' has 2 rows, too many for the 1 rows"),
        ({"validation": 0.1, "test": 0.0}, "no validation split: data.split.validation=0.1 of 4 "
         "rows rounds to 0 rows"),
    ],
)
def test_an_empty_seeded_split_is_a_warning(tmp_path, capsys, split, words):
    rows = "text,label,speaker\nnice,pos,a\nbad,neg,b\nok,pos,a\nmeh,neg,b\n"
    data = {"path": "data.csv", "split": {**split, "stratify": False}}
    code, out, err = validate(capsys, write_spec(tmp_path, data=data, extra_csv=rows))
    assert code == 0, err
    assert words in err
    assert "no test split" not in err  # test=0.0 asks for none; 0.1 of 4 rows is none, said once
