"""Conv1d and ConvTranspose1d as PyTorch and MindSpore compute them, in pure NumPy.

convmigrate proves a migrated model computes what the original did without trusting either
framework's kernels, so the arithmetic lives here, written against NumPy only (1.26 and 2.x):

- `torch_conv1d`: torch.nn.Conv1d (padding int/"valid"/"same", any padding_mode)
- `ms_conv1d`: mindspore.nn.Conv1d (pad_mode "same"/"valid"/"pad", weight (C_out, C_in/g, 1, K))
- `torch_conv_transpose1d`: torch.nn.functional.conv_transpose1d (output_padding)
- `ms_conv1d_transpose`: mindspore.nn.Conv1dTranspose (weight (C_in, C_out/g, 1, K))

float32/float64 are computed in their own precision, float16 and bfloat16 (uint16 bit arrays
with `dtype="bfloat16"`) in float32 and rounded once. Invalid hyperparameters raise ValueError.

>>> import numpy as np
>>> from convmigrate.numerics import torch_conv1d
>>> torch_conv1d(np.ones((1, 2, 5), np.float32), np.ones((4, 2, 3), np.float32)).shape
(1, 4, 3)
"""

from convmigrate.numerics.conv import ms_conv1d, torch_conv1d
from convmigrate.numerics.transpose import ms_conv1d_transpose, torch_conv_transpose1d

__all__ = ["ms_conv1d", "ms_conv1d_transpose", "torch_conv1d", "torch_conv_transpose1d"]
