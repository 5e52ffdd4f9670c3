"""convmigrate: move Conv1d-heavy model weights between PyTorch and MindSpore, and prove it.

The Python API (convmigrate/api.py) is the CLI's commands as functions:

    >>> import convmigrate
    >>> result = convmigrate.torch2ms("fixtures/tiny_tcn.pt", "tiny_tcn.ckpt", fold_weight_norm=True)
    >>> result.ok, str(result.output), result.plan.counts()["reshape"]
    (True, 'tiny_tcn.ckpt', 3)
    >>> convmigrate.verify("fixtures/tiny_tcn.pt", "tiny_tcn.ckpt").ok
    True

Importing convmigrate is light: NumPy and the readers load on the first call. MindSpore is
imported only to run the user's MindSpore network (`compare`, `torch2ms(ms_model=...)`); torch
only where torch.load must read a file that the torch-free reader leaves to it (legacy files,
views, pickled modules), or to run the user's PyTorch model (`model=`, `compare`).
"""

__version__ = "0.1.0"

from convmigrate.api import compare, convert, inspect, ms2torch, torch2ms, verify

__all__ = ["__version__", "compare", "convert", "inspect", "ms2torch", "torch2ms", "verify"]
