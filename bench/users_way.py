"""What users do today without convmigrate: the baseline row of bench/run.py.

    python bench/users_way.py IN.pt OUT.ckpt      # needs torch and MindSpore in this Python

torch.load the whole state dict, make each 3-D `*.weight` 4-D (MindSpore's Conv1d is a Conv2d
with a unit height), hand every tensor to MindSpore and save_checkpoint, the way migration
guides show it. Exit code 3 when MindSpore is not installed, so the benchmark can say so.
"""

from __future__ import annotations

import sys


def main() -> int:
    source, target = sys.argv[1], sys.argv[2]
    try:
        import mindspore
    except ImportError:
        print("MindSpore is not installed in this Python", file=sys.stderr)
        return 3
    import torch

    state = torch.load(source, map_location="cpu")
    params = []
    for name, tensor in state.items():
        array = tensor.numpy()
        if array.ndim == 3 and name.endswith(".weight"):
            array = array[:, :, None, :]  # (C_out, C_in, K) -> (C_out, C_in, 1, K)
        params.append({"name": name, "data": mindspore.Tensor(array)})
    mindspore.save_checkpoint(params, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
