"""Tiny random backbones written with ``save_pretrained``, for tests and for trying the plugin
without downloading anything: each folder is what a real model's folder holds (``config.json``,
``model.safetensors``, the tokenizer or processor files), only with a few thousand weights.

    from mmcore_plugin_transformers.testing import tiny_text_model
    tiny_text_model("models/tiny-bert")    # then: pretrained: "models/tiny-bert"
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

#: words the tiny text model's tokenizer knows (anything else is [UNK])
WORDS = ("good great fine nice love phone battery screen works bad terrible broken poor "
         "hate died never slow the a it is and not was")


def tiny_text_model(folder: str | Path, words: Sequence[str] | None = None, seed: int = 0,
                    layers: int = 2) -> Path:
    """A 2-layer BERT (hidden size 16) with a word-level, lower-casing tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(folder)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *(words or WORDS.split())]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=128)
    torch.manual_seed(seed)
    _save(BertModel(config), folder)
    fast.save_pretrained(str(folder))
    return folder


def tiny_image_model(folder: str | Path, size: int = 32, seed: int = 0) -> Path:
    """A 2-layer ViT (hidden size 16, 8x8 patches) with an image processor resizing to
    ``size`` x ``size``."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = Path(folder)
    config = ViTConfig(image_size=size, patch_size=8, hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=32, num_channels=3)
    torch.manual_seed(seed)
    _save(ViTModel(config), folder)
    ViTImageProcessor(size={"height": size, "width": size}).save_pretrained(str(folder))
    return folder


def tiny_audio_model(folder: str | Path, rate: int = 16000, seed: int = 0) -> Path:
    """A 2-layer wav2vec2 (hidden size 16; three convolutions, 320x down-sampling like the real
    model's: 50 frames a second at 16 kHz) with a feature extractor at ``rate`` Hz."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = Path(folder)
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8, 8), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
        do_stable_layer_norm=True, mask_time_prob=0.0,
    )
    torch.manual_seed(seed)
    _save(Wav2Vec2Model(config), folder)
    Wav2Vec2FeatureExtractor(sampling_rate=rate, return_attention_mask=True,
                             do_normalize=True).save_pretrained(str(folder))
    return folder


def _save(model, folder: Path) -> None:
    from mmcore_plugin_transformers.backbone import quiet_transformers

    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(str(folder))
