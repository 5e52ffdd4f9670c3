"""convmigrate: move Conv1d-heavy model weights between PyTorch and MindSpore, and prove it.

The library never imports MindSpore; torch is imported only where torch.load must read a file
that the torch-free reader leaves to it (legacy files, views, pickled modules), or for --model.
"""

__version__ = "0.1.0"
