"""convmigrate: move Conv1d-heavy model weights between PyTorch and MindSpore, and prove it.

The Python API (convmigrate/api.py) is the CLI's commands as functions:

    >>> import convmigrate
    >>> result = convmigrate.torch2ms("model.pt", "model.ckpt", fold_weight_norm=True)  # doctest: +SKIP
    >>> convmigrate.verify("model.pt", "model.ckpt").ok                                 # doctest: +SKIP
    True

Importing convmigrate is light: NumPy and the readers load on the first call. The library never
imports MindSpore; torch is imported only where torch.load must read a file that the torch-free
reader leaves to it (legacy files, views, pickled modules), or for `model=`.
"""

__version__ = "0.1.0"

from convmigrate.api import convert, inspect, ms2torch, torch2ms, verify

__all__ = ["__version__", "convert", "inspect", "ms2torch", "torch2ms", "verify"]
