"""Real audio architectures from `transformers`, built from config objects (no hub, no download),
as `convmigrate compare --torch-model tests.audio_models:<factory>` builds them.

Their MindSpore ports, written here for the tests, are in tests/audio_ports.py. The small
configs keep CI fast; the base-size ones are what bench/compare_tolerance.py measures.
"""

from __future__ import annotations

import torch


def wav2vec2_config(size: str = "small"):
    from transformers import Wav2Vec2Config

    if size == "base":  # facebook/wav2vec2-base's shapes
        return Wav2Vec2Config()
    return Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    )


def hifigan_config(size: str = "small"):
    from transformers import SpeechT5HifiGanConfig

    if size == "base":  # microsoft/speecht5_hifigan's shapes
        return SpeechT5HifiGanConfig()
    return SpeechT5HifiGanConfig(
        model_in_dim=8, upsample_initial_channel=16, upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4],
        resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3], [1, 3]],
    )


def wav2vec2_small() -> torch.nn.Module:
    from transformers import Wav2Vec2Model

    torch.manual_seed(0)
    return Wav2Vec2Model(wav2vec2_config()).eval()


def wav2vec2_base() -> torch.nn.Module:
    from transformers import Wav2Vec2Model

    torch.manual_seed(0)
    return Wav2Vec2Model(wav2vec2_config("base")).eval()


def wav2vec2_feature_encoder() -> torch.nn.Module:
    """Only the convolutional feature encoder (what a port often starts with)."""
    return wav2vec2_small().feature_extractor


def hifigan_small() -> torch.nn.Module:
    from transformers import SpeechT5HifiGan

    torch.manual_seed(0)
    return SpeechT5HifiGan(hifigan_config()).eval()


def hifigan_base() -> torch.nn.Module:
    from transformers import SpeechT5HifiGan

    torch.manual_seed(0)
    return SpeechT5HifiGan(hifigan_config("base")).eval()
