"""Loading a backbone and its processor with ``transformers``, offline and without pickles.

Everything here imports ``transformers`` lazily, inside the functions: registering the plugin
and validating a spec never pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from mmcore.errors import DataError

#: files of a model folder that describe it; the weights are left out of fingerprints
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


def resolve_source(pretrained: str, root: Path | None, allow_download: bool, name: str) -> str:
    """``pretrained`` as a folder path (relative to ``root``), or as a hub id when allowed."""
    path = Path(pretrained).expanduser()
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DataError(
                f"modality {name!r}: option pretrained={pretrained!r}: {path} has no config.json; "
                "expected a folder written by save_pretrained (config.json, model.safetensors "
                "and the tokenizer or processor files)"
            )
        return str(path)
    if allow_download:
        return pretrained
    raise DataError(
        f"modality {name!r}: option pretrained={pretrained!r} names no folder ({path} does not "
        "exist); expected a folder written by save_pretrained (relative paths resolve against "
        "the data root). To download a hub model id instead, set allow_download: true"
    )


#: keys of a folder's JSON files that name the class transformers instantiates, and what that
#: class must be: ``(module, base class)`` inside transformers
CLASS_KEYS = {
    "tokenizer_class": ("transformers", "PreTrainedTokenizerBase"),
    "image_processor_type": ("transformers.image_processing_utils", "BaseImageProcessor"),
    "feature_extractor_type": ("transformers.feature_extraction_utils",
                               "FeatureExtractionMixin"),
    "processor_class": ("transformers.processing_utils", "ProcessorMixin"),
}


def check_folder(folder: str | Path, error: type[Exception] = DataError) -> None:
    """Refuse a model folder whose files would make transformers run code that is not its
    own: an ``auto_map`` (model code shipped in the folder), or a class key naming anything
    but one of transformers' own tokenizer, processor or feature-extractor classes.

    ``trust_remote_code=False`` alone does not cover this: the ``Auto*`` processor classes
    resolve those keys before they look at it, and ask on the terminal whether to run a
    folder's code. A run folder is data, so nothing in it may get that far."""
    import transformers

    for path in sorted(Path(folder).glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise error(f"{path}: not readable JSON ({exc})") from None
        if _has_key(doc, "auto_map"):
            raise error(
                f"{path}: asks to run model code shipped with the folder (auto_map); mmcore "
                "never runs code from a model or run folder. Use a model whose architecture "
                "transformers has built in"
            )
        if not isinstance(doc, dict):
            continue
        for key, (module, base) in CLASS_KEYS.items():
            name = doc.get(key)
            if name is None:
                continue
            found = getattr(transformers, name, None) if isinstance(name, str) else None
            expected = getattr(__import__(module, fromlist=[base]), base)
            dummy = type(found).__name__ == "DummyObject"  # needs a package not installed
            if not (isinstance(found, type) and found.__module__.startswith("transformers.")
                    and (dummy or issubclass(found, expected))):
                raise error(
                    f"{path}: {key}={name!r} is not one of transformers' own {base} classes "
                    f"(transformers {transformers.__version__})"
                )


def _has_key(doc: object, key: str, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if isinstance(doc, dict):
        return key in doc or any(_has_key(v, key, depth + 1) for v in doc.values())
    if isinstance(doc, list):
        return any(_has_key(v, key, depth + 1) for v in doc)
    return False


def download(repo_id: str) -> str:
    """A hub model's files in the local Hugging Face cache (``allow_download``), so that they
    are checked like a folder's before transformers reads them."""
    from huggingface_hub import snapshot_download

    with quiet_transformers():
        return snapshot_download(
            repo_id, allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors", "*.tiktoken"]
        )


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or advice from transformers while loading."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def load_kwargs(source: str, allow_download: bool) -> dict[str, Any]:
    """Keyword arguments of every ``from_pretrained``: local files unless downloading is
    allowed and ``source`` is not a folder; model code from the folder is never trusted."""
    local = Path(source).is_dir() or not allow_download
    return {"local_files_only": local, "trust_remote_code": False}


def load_config(source: str, allow_download: bool) -> Any:
    from transformers import AutoConfig

    with quiet_transformers():
        return AutoConfig.from_pretrained(source, **load_kwargs(source, allow_download))


def load_model(source: str | None, config: Any, allow_download: bool) -> nn.Module:
    """The backbone: pretrained weights from ``source`` (safetensors only), or, with no
    ``source`` (a run folder's config), built from ``config`` for a checkpoint's weights."""
    from transformers import AutoModel

    with quiet_transformers():
        if source is None:
            return AutoModel.from_config(config, trust_remote_code=False)
        try:
            return AutoModel.from_pretrained(
                source, config=config, use_safetensors=True,
                **load_kwargs(source, allow_download),
            )
        except OSError as exc:
            raise DataError(
                f"{source}: cannot load pretrained weights ({exc}); mmcore reads "
                "model.safetensors only (convert a pytorch_model.bin with save_pretrained)"
            ) from None


def folder_digest(folder: Path) -> str:
    """SHA-256 of the names and contents of a folder's small files (weights left out): it
    changes when the tokenizer, processor or config changes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        if path.suffix in WEIGHT_SUFFIXES:
            continue
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def drop_pooler(model: nn.Module) -> None:
    """Remove a model's trained pooler head (BERT's, ViT's dense layer): mmcore pools itself,
    and a layer that gets no gradient stalls ``DistributedDataParallel``. A pooler without
    weights (ResNet's average pooling, which its forward always calls) stays."""
    pooler = getattr(model, "pooler", None)
    if isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        model.pooler = None


def without_layerdrop(config: Any) -> Any:
    """``config`` with LayerDrop off (wav2vec2-family configs default to 0.1): a layer skipped
    at random gets no gradient, which ``DistributedDataParallel`` cannot take."""
    if getattr(config, "layerdrop", 0.0):
        config.layerdrop = 0.0
    return config


def layer_list(model: nn.Module, count: int | None) -> nn.ModuleList | None:
    """The model's list of transformer layers: the first ``ModuleList`` with ``count``
    entries (``config.num_hidden_layers``), else the longest one."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    exact = [m for m in lists if count is not None and len(m) == count]
    if exact:
        return exact[0]
    return max(lists, key=len) if lists else None


#: sub-modules that turn inputs into the first layer's input, by model family
EMBEDDINGS = ("embeddings", "embed_tokens", "feature_extractor", "feature_projection",
              "embedder", "patch_embed", "stem")


def freeze_layers(model: nn.Module, n: int) -> None:
    """Fix the embeddings and the first ``n`` transformer layers (``requires_grad=False``)."""
    if n <= 0:
        return
    layers = layer_list(model, getattr(getattr(model, "config", None), "num_hidden_layers",
                                       None))
    if layers is None:
        raise DataError(f"freeze_layers={n}: {type(model).__name__} has no list of layers")
    if n > len(layers):
        raise DataError(f"freeze_layers={n}: {type(model).__name__} has {len(layers)} layers")
    frozen = [module for name, module in model.named_children() if name in EMBEDDINGS]
    frozen += list(layers[:n])
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)


def min_audio_samples(config: Any) -> int:
    """The fewest samples that give a wav2vec2-style feature encoder one output frame."""
    need = 1
    kernels, strides = getattr(config, "conv_kernel", ()), getattr(config, "conv_stride", ())
    for kernel, stride in reversed(list(zip(kernels, strides, strict=False))):
        need = (need - 1) * stride + kernel
    return need
