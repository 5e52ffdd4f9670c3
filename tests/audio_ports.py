"""MindSpore ports of transformers' Wav2Vec2Model and SpeechT5HifiGan, written layer for layer
with MindSpore's own `nn` cells, as a porting team would write them.

`convmigrate compare --ms-model tests.audio_ports:<factory>`. The attribute names follow the
PyTorch modules (so the parameter names pair), MindSpore's names for the parameters themselves
(gamma/beta, the 4-D conv weights). What a port must get right, and these do:
GELU without the tanh approximation (MindSpore's nn.GELU approximates by default), every
epsilon, the positional conv's padding with the extra output removed for an even kernel, the
weight norm folded into a plain conv, HiFi-GAN's final leaky ReLU at slope 0.01 (not the
config's), and `has_bias=True` everywhere PyTorch has a bias.
This module imports MindSpore: only tests that take the `ms` fixture use it.
"""

from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from tests.audio_models import hifigan_config, wav2vec2_config


def _gelu() -> nn.Cell:
    return nn.GELU(approximate=False)  # transformers' "gelu" is the exact erf form


class Wav2Vec2ConvLayer(nn.Cell):
    def __init__(self, config, layer_id: int) -> None:
        super().__init__()
        in_dim = config.conv_dim[layer_id - 1] if layer_id > 0 else 1
        out_dim = config.conv_dim[layer_id]
        self.conv = nn.Conv1d(in_dim, out_dim, config.conv_kernel[layer_id], stride=config.conv_stride[layer_id],
                              pad_mode="valid", has_bias=config.conv_bias)
        self.has_norm = layer_id == 0 and config.feat_extract_norm == "group"
        if self.has_norm:
            self.layer_norm = nn.GroupNorm(out_dim, out_dim, eps=1e-5)
        self.activation = _gelu()

    def construct(self, x):
        x = self.conv(x)
        if self.has_norm:
            x = self.layer_norm(x)
        return self.activation(x)


class Wav2Vec2FeatureEncoder(nn.Cell):
    def __init__(self, config) -> None:
        super().__init__()
        self.conv_layers = nn.CellList([Wav2Vec2ConvLayer(config, i) for i in range(config.num_feat_extract_layers)])

    def construct(self, input_values):
        x = ops.expand_dims(input_values, 1)
        for layer in self.conv_layers:
            x = layer(x)
        return x


class Wav2Vec2FeatureProjection(nn.Cell):
    def __init__(self, config) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm((config.conv_dim[-1],), epsilon=config.layer_norm_eps)
        self.projection = nn.Dense(config.conv_dim[-1], config.hidden_size)
        self.dropout = nn.Dropout(p=config.feat_proj_dropout)

    def construct(self, x):
        normed = self.layer_norm(x)
        return self.dropout(self.projection(normed)), normed


class Wav2Vec2PositionalConvEmbedding(nn.Cell):
    def __init__(self, config) -> None:
        super().__init__()
        kernel = config.num_conv_pos_embeddings
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, kernel, pad_mode="pad", padding=kernel // 2,
                              group=config.num_conv_pos_embedding_groups, has_bias=True)  # weight norm folded
        self.remove = 1 if kernel % 2 == 0 else 0
        self.activation = _gelu()

    def construct(self, x):
        x = self.conv(ops.transpose(x, (0, 2, 1)))
        if self.remove:
            x = x[:, :, : -self.remove]
        return ops.transpose(self.activation(x), (0, 2, 1))


class Wav2Vec2Attention(nn.Cell):
    def __init__(self, config) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.scaling = self.head_dim ** -0.5
        size = config.hidden_size
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (nn.Dense(size, size) for _ in range(4))

    def _heads(self, x):
        batch, length, _ = x.shape
        return ops.transpose(x.reshape(batch, length, self.heads, self.head_dim), (0, 2, 1, 3))

    def construct(self, x):
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        weights = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * self.scaling, axis=-1)
        batch, length, size = x.shape
        out = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3)).reshape(batch, length, size)
        return self.out_proj(out)


class Wav2Vec2FeedForward(nn.Cell):
    def __init__(self, config) -> None:
        super().__init__()
        self.intermediate_dropout = nn.Dropout(p=config.activation_dropout)
        self.intermediate_dense = nn.Dense(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = _gelu()
        self.output_dense = nn.Dense(config.intermediate_size, config.hidden_size)
        self.output_dropout = nn.Dropout(p=config.hidden_dropout)

    def construct(self, x):
        x = self.intermediate_dropout(self.intermediate_act_fn(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class Wav2Vec2EncoderLayer(nn.Cell):
    def __init__(self, config) -> None:
        super().__init__()
        self.attention = Wav2Vec2Attention(config)
        self.dropout = nn.Dropout(p=config.hidden_dropout)
        self.layer_norm = nn.LayerNorm((config.hidden_size,), epsilon=config.layer_norm_eps)
        self.feed_forward = Wav2Vec2FeedForward(config)
        self.final_layer_norm = nn.LayerNorm((config.hidden_size,), epsilon=config.layer_norm_eps)

    def construct(self, x):
        x = self.layer_norm(x + self.dropout(self.attention(x)))
        return self.final_layer_norm(x + self.feed_forward(x))


class Wav2Vec2Encoder(nn.Cell):
    def __init__(self, config) -> None:
        super().__init__()
        self.pos_conv_embed = Wav2Vec2PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm((config.hidden_size,), epsilon=config.layer_norm_eps)
        self.dropout = nn.Dropout(p=config.hidden_dropout)
        self.layers = nn.CellList([Wav2Vec2EncoderLayer(config) for _ in range(config.num_hidden_layers)])

    def construct(self, x):
        x = self.dropout(self.layer_norm(x + self.pos_conv_embed(x)))
        for layer in self.layers:
            x = layer(x)
        return x


class Wav2Vec2Model(nn.Cell):
    def __init__(self, config) -> None:
        super().__init__()
        self.feature_extractor = Wav2Vec2FeatureEncoder(config)
        self.feature_projection = Wav2Vec2FeatureProjection(config)
        # Used only by SpecAugment in training; the checkpoint has it, so the port keeps it.
        self.masked_spec_embed = Parameter(Tensor(np.zeros(config.hidden_size, np.float32)), name="masked_spec_embed")
        self.encoder = Wav2Vec2Encoder(config)

    def construct(self, input_values):
        features = ops.transpose(self.feature_extractor(input_values), (0, 2, 1))
        hidden, features = self.feature_projection(features)
        return self.encoder(hidden), features


class HifiGanResidualBlock(nn.Cell):
    def __init__(self, channels: int, kernel_size: int, dilation: list[int], slope: float) -> None:
        super().__init__()
        self.slope = slope
        self.convs1 = nn.CellList([
            nn.Conv1d(channels, channels, kernel_size, dilation=d, pad_mode="pad", padding=(kernel_size * d - d) // 2,
                      has_bias=True) for d in dilation])
        self.convs2 = nn.CellList([
            nn.Conv1d(channels, channels, kernel_size, pad_mode="pad", padding=(kernel_size - 1) // 2, has_bias=True)
            for _ in dilation])

    def construct(self, x):
        for conv1, conv2 in zip(self.convs1, self.convs2):
            h = conv2(ops.leaky_relu(conv1(ops.leaky_relu(x, self.slope)), self.slope))
            x = h + x
        return x


class SpeechT5HifiGan(nn.Cell):
    def __init__(self, config) -> None:
        super().__init__()
        self.slope = config.leaky_relu_slope
        self.final_slope = 0.01  # PyTorch's default slope: transformers calls leaky_relu(x) without the config's
        self.normalize_before = config.normalize_before
        self.num_kernels = len(config.resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(config.model_in_dim, config.upsample_initial_channel, 7, pad_mode="pad", padding=3,
                                  has_bias=True)
        self.upsampler = nn.CellList([
            nn.Conv1dTranspose(config.upsample_initial_channel // 2 ** i, config.upsample_initial_channel // 2 ** (i + 1),
                               k, stride=u, pad_mode="pad", padding=(k - u) // 2, has_bias=True)
            for i, (u, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes))])
        blocks = []
        for i in range(len(config.upsample_rates)):
            channels = config.upsample_initial_channel // 2 ** (i + 1)
            blocks += [HifiGanResidualBlock(channels, k, d, config.leaky_relu_slope)
                       for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)]
        self.resblocks = nn.CellList(blocks)
        self.conv_post = nn.Conv1d(channels, 1, 7, pad_mode="pad", padding=3, has_bias=True)
        self.mean = Parameter(Tensor(np.zeros(config.model_in_dim, np.float32)), name="mean", requires_grad=False)
        self.scale = Parameter(Tensor(np.ones(config.model_in_dim, np.float32)), name="scale", requires_grad=False)

    def construct(self, spectrogram):
        if self.normalize_before:
            spectrogram = (spectrogram - self.mean) / self.scale
        x = self.conv_pre(ops.transpose(spectrogram, (0, 2, 1)))
        for i, upsample in enumerate(self.upsampler):
            x = upsample(ops.leaky_relu(x, self.slope))
            total = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                total = total + self.resblocks[i * self.num_kernels + j](x)
            x = total / self.num_kernels
        x = ops.tanh(self.conv_post(ops.leaky_relu(x, self.final_slope)))
        return x.reshape(x.shape[0], -1)


def wav2vec2_small() -> Wav2Vec2Model:
    return Wav2Vec2Model(wav2vec2_config())


def wav2vec2_base() -> Wav2Vec2Model:
    return Wav2Vec2Model(wav2vec2_config("base"))


def wav2vec2_feature_encoder() -> Wav2Vec2FeatureEncoder:
    return Wav2Vec2FeatureEncoder(wav2vec2_config())


def hifigan_small() -> SpeechT5HifiGan:
    return SpeechT5HifiGan(hifigan_config())


def hifigan_base() -> SpeechT5HifiGan:
    return SpeechT5HifiGan(hifigan_config("base"))


def wav2vec2_small_tanh_gelu() -> Wav2Vec2Model:
    """A port that kept MindSpore's default GELU (the tanh approximation) in the feature encoder."""
    net = wav2vec2_small()
    for layer in net.feature_extractor.conv_layers:
        layer.activation = nn.GELU()
    return net


def hifigan_small_config_slope() -> SpeechT5HifiGan:
    """A port that used the config's leaky ReLU slope (0.1) before conv_post too."""
    net = hifigan_small()
    net.final_slope = net.slope
    return net
