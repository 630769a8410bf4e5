"""The pretrained modalities pass mmcore's plugin contract, on tiny random backbones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from mmcore.testing import ModalityContract

if importlib.util.find_spec("transformers") is None:  # found, not imported: collecting is quick
    pytest.skip("needs transformers (pip install mmcore-plugin-transformers)",
                allow_module_level=True)

from mmcore_plugin_transformers.testing import (  # noqa: E402
    tiny_audio_model,
    tiny_image_model,
    tiny_text_model,
)


class PretrainedContract(ModalityContract):
    """``pretrained`` has no default: a pretrained modality without a model means nothing."""

    def test_options_reject_unknown_keys_and_defaults_validate(self) -> None:
        from pydantic import ValidationError

        model = self.options_model()
        with pytest.raises(ValidationError, match="pretrained"):
            model()
        given = model.model_validate(self.make_options())
        with pytest.raises(ValidationError, match="no_such_option"):
            model.model_validate(self.make_options(no_such_option=1))
        assert model.model_validate_json(given.model_dump_json()) == given


class TestTextContract(PretrainedContract):
    plugin = "hf_text"
    samples = ["good phone", "the battery died and it was never fine", "bad", "nice screen"]
    options = {"pretrained": "bert"}
    bad_samples = [42, ["a", "list"]]

    def make_samples(self, tmp_path: Path) -> list[str]:
        if not (tmp_path / "bert").exists():
            tiny_text_model(tmp_path / "bert")
        return list(self.samples)


class TestImageContract(PretrainedContract):
    plugin = "hf_image"
    options = {"pretrained": "vit"}
    bad_samples = [b"not an image", "missing.png"]

    def make_samples(self, tmp_path: Path) -> list[str]:
        if not (tmp_path / "vit").exists():
            tiny_image_model(tmp_path / "vit")
            rng = np.random.default_rng(0)
            for i, (h, w) in enumerate([(20, 30), (40, 40), (33, 17)]):
                pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        return [f"{i}.png" for i in range(3)]


class TestAudioContract(PretrainedContract):
    plugin = "hf_audio"
    options = {"pretrained": "w2v"}
    bad_samples = [b"not audio", np.zeros(10, dtype=np.float32)]

    def make_samples(self, tmp_path: Path) -> list[str]:
        if not (tmp_path / "w2v").exists():
            tiny_audio_model(tmp_path / "w2v", rate=8000)
            rng = np.random.default_rng(0)
            for i, (n, rate) in enumerate([(1600, 8000), (4000, 16000), (900, 8000)]):
                soundfile.write(tmp_path / f"{i}.wav", rng.normal(0, 0.1, n), rate)
        return [f"{i}.wav" for i in range(3)]
