"""convmigrate: move Conv1d-heavy model weights between PyTorch and MindSpore, and prove it.

The library never imports MindSpore; torch is imported only where a torch.save file is read or
written.
"""

__version__ = "0.1.0"
