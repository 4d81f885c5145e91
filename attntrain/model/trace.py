"""Whether the model is being traced for export (TorchScript or ONNX).

Shortcuts that depend on a batch's values (skipping padded rows, convolving each distinct spelling
once, sizing chunks from the input) would be frozen into a traced graph for the example batch; under a
trace the model takes its plain path, which holds for any input.
"""

from __future__ import annotations

import torch


def exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
