"""mmcore plugin: pretrained Hugging Face ``transformers`` backbones as modalities.

Only the registration lives here: discovering plugins (``mmcore plugins``, ``mmcore validate``)
imports neither torch nor transformers.
"""

from __future__ import annotations

from mmcore.plugins.hookspecs import hookimpl

MMCORE_API_VERSION = 1


@hookimpl
def register_modalities(register) -> None:
    register(
        "hf_text",
        "mmcore_plugin_transformers.text:PretrainedText",
        options="mmcore_plugin_transformers.options:TextOptions",
        description="strings: a pretrained transformers text model and its tokenizer",
    )
    register(
        "hf_image",
        "mmcore_plugin_transformers.image:PretrainedImage",
        options="mmcore_plugin_transformers.options:ImageOptions",
        description="images: a pretrained transformers vision model and its image processor",
    )
    register(
        "hf_audio",
        "mmcore_plugin_transformers.audio:PretrainedAudio",
        options="mmcore_plugin_transformers.options:AudioOptions",
        description="audio: a pretrained transformers speech model (wav2vec2 family) and its "
        "feature extractor",
    )
