"""What the pretrained modalities share: the backbone's folder, its processor and config as
fitted state, and building the encoder from weights or from a run folder's config.

Life of a modality:

* training: :meth:`fit` loads the processor and config from the ``pretrained`` folder;
  :meth:`save_state` writes both into the run folder (``modalities/<name>/``);
  :meth:`build_encoder` loads the pretrained weights from the folder.
* evaluation, prediction, resume: :meth:`load_state` reads the processor and config back
  from the run folder; :meth:`build_encoder` builds the architecture from the config, and the
  checkpoint's ``model.safetensors`` supplies every weight. The original folder is not needed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from mmcore.errors import CheckpointError, DataError
from mmcore.modality import Modality
from mmcore_plugin_transformers import backbone as bb
from mmcore_plugin_transformers.encoder import Kind, PretrainedEncoder
from mmcore_plugin_transformers.options import PretrainedOptions

OptionsT = TypeVar("OptionsT", bound=PretrainedOptions)


class PretrainedModality(Modality[OptionsT], Generic[OptionsT]):
    """Base of ``hf_text``, ``hf_image`` and ``hf_audio``; subclasses set ``kind`` and
    implement ``load_processor``, ``preprocess`` and ``collate``."""

    kind: ClassVar[Kind]
    #: fit() is what tells training to start from the pretrained weights (a state loaded
    #: from a cache would build the backbone from its config, like a run folder's): always fit
    cache_fit: ClassVar[bool] = False

    def __init__(self, name: str, options: OptionsT, root: Path | None = None, *,
                 columns: Sequence[str] = ()):
        super().__init__(name, options, root, columns=columns)
        self.processor: Any = None
        self.config: Any = None
        #: where the pretrained weights come from (``None``: from a checkpoint)
        self.weights_from: str | None = None
        self._state_digest: str | None = None

    # -- the processor ----------------------------------------------------------------------
    def load_processor(self, source: str, **kwargs: Any) -> Any:  # pragma: no cover
        """The tokenizer / image processor / feature extractor saved in ``source``."""
        raise NotImplementedError

    def check_processor(self) -> None:
        """Raise ``DataError`` when the processor does not suit this modality (default: fine)."""

    @property
    def ready(self) -> bool:
        return self.processor is not None

    def _require(self) -> None:
        if self.processor is None:
            raise RuntimeError(
                f"modality {self.name!r} is not fitted: call fit() (which loads the processor "
                "from the pretrained folder) or load_state() from a run folder first"
            )

    # -- fitted state -----------------------------------------------------------------------
    def check(self) -> None:
        """``mmcore validate``: the ``pretrained`` folder exists (relative to the data root)
        and holds a readable ``config.json``, without importing transformers. A hub id with
        ``allow_download`` is left to :meth:`fit`."""
        options = self.options
        source = Path(bb.resolve_source(options.pretrained, self.root, options.allow_download,
                                        self.name))
        if not source.is_dir():
            return
        try:
            config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(
                f"modality {self.name!r}: option pretrained={options.pretrained!r}: "
                f"{source / 'config.json'} is not readable JSON ({exc})"
            ) from None
        if not isinstance(config, dict) or "model_type" not in config:
            raise DataError(
                f"modality {self.name!r}: option pretrained={options.pretrained!r}: "
                f"{source / 'config.json'} names no model_type; expected a folder written by "
                "save_pretrained"
            )

    def fit(self, values: Sequence[Any]) -> None:
        """Load the processor and config from ``pretrained``: nothing is learned from the
        values, but this is when the folder is first needed."""
        options = self.options
        source = bb.resolve_source(options.pretrained, self.root, options.allow_download,
                                   self.name)
        if not Path(source).is_dir():  # a hub id, with allow_download
            source = bb.download(source)
        bb.check_folder(source)
        kwargs = bb.load_kwargs(source, allow_download=False)
        self.config = bb.load_config(source, allow_download=False)
        with bb.quiet_transformers():
            self.processor = self.load_processor(source, **kwargs)
        self.weights_from = source
        self._state_digest = None
        self.check_processor()

    def save_state(self, directory: Path) -> None:
        """The processor's and the config's files (``save_pretrained``), never the weights:
        those are in the checkpoint with the rest of the model."""
        self._require()
        self.processor.save_pretrained(str(directory))
        self.config.save_pretrained(str(directory))

    def load_state(self, directory: Path) -> None:
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise CheckpointError(
                f"modality {self.name!r}: {directory / 'config.json'} is missing; the run "
                "folder is incomplete"
            )
        bb.check_folder(directory, CheckpointError)
        kwargs = {"local_files_only": True, "trust_remote_code": False}
        try:
            self.config = bb.load_config(str(directory), allow_download=False)
            with bb.quiet_transformers():
                self.processor = self.load_processor(str(directory), **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure to read it is a bad run folder
            raise CheckpointError(
                f"modality {self.name!r}: cannot read {directory}: {type(exc).__name__}: {exc}"
            ) from None
        self.weights_from = None
        self._state_digest = None
        self.check_processor()

    def fingerprint(self) -> str:
        """Options plus a digest of what preprocessing depends on: the processor as saved
        (once fitted), else the pretrained folder's small files."""
        if self.processor is not None:
            if self._state_digest is None:
                with tempfile.TemporaryDirectory() as tmp:
                    self.processor.save_pretrained(tmp)
                    self._state_digest = bb.folder_digest(Path(tmp))
            return f"{super().fingerprint()}|processor={self._state_digest}"
        try:
            source = bb.resolve_source(self.options.pretrained, self.root,
                                       self.options.allow_download, self.name)
        except Exception:  # noqa: BLE001 - fit() reports a bad folder with its reason
            return f"{super().fingerprint()}|folder=missing"
        path = Path(source)
        digest = bb.folder_digest(path) if path.is_dir() else hashlib.sha256(
            source.encode()).hexdigest()[:16]
        return f"{super().fingerprint()}|folder={digest}"

    # -- the encoder ------------------------------------------------------------------------
    def build_encoder(self) -> PretrainedEncoder:
        """The backbone with pretrained weights (training) or built from the run folder's
        config (its weights then come from the checkpoint), wrapped as an encoder."""
        self._require()
        options = self.options
        config = bb.without_layerdrop(copy.deepcopy(self.config))
        model = bb.load_model(self.weights_from, config, options.allow_download)
        bb.drop_pooler(model)
        bb.freeze_layers(model, options.freeze_layers)
        return PretrainedEncoder(model, self.kind, options.output, options.pooling,
                                 options.size, options.gradient_checkpointing)
