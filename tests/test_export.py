"""ONNX export checked against onnxruntime on real inputs, TorchScript likewise, and what is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attntrain.errors import UserError
from attntrain.export import LogitsModel, export_run, sample_batch
from attntrain.runs import load_run


def torch_and_batches(run_dir):
    """The run's model and real test batches of different sizes and lengths than the traced one."""
    cfg, task, model, _ = load_run(run_dir, device="cpu")
    raw = [ex for ex in task.split_raw("test") if not task.is_empty(ex)]
    return task, model, [sample_batch(task, raw[:1]), sample_batch(task, raw[3:20]), sample_batch(task, raw[20:25])]


@pytest.mark.parametrize("run", ["tagging_run", "sequence_run"])
def test_onnx_export_matches_torch_under_onnxruntime(run, request, tmp_path):
    import onnxruntime

    torch.set_num_threads(1)
    run_dir = request.getfixturevalue(run)
    message = export_run(run_dir, fmt="onnx", out=tmp_path / "model.onnx")
    assert "inputs: words, mask, chars" in message
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    task, model, batches = torch_and_batches(run_dir)
    shapes = set()
    for batch in batches:
        got = session.run(["logits"], {n: batch[n].numpy() for n in names})[0]
        with torch.no_grad():
            want = LogitsModel(model, names)(*[batch[n] for n in names]).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4
        assert (got.argmax(-1) == want.argmax(-1)).all()
        shapes.add(got.shape)
    assert len(shapes) == 3  # dynamic batch (and, for tagging, length) axes


def test_torchscript_export_matches_torch(tagging_run, tmp_path):
    export_run(tagging_run, fmt="torchscript", out=tmp_path / "model.pt")
    loaded = torch.jit.load(str(tmp_path / "model.pt"))
    task, model, batches = torch_and_batches(tagging_run)
    names = ["words", "mask", "chars"]
    for batch in batches:
        with torch.no_grad():
            torch.testing.assert_close(loaded(*[batch[n] for n in names]), LogitsModel(model, names)(*[batch[n] for n in names]),
                                       atol=1e-4, rtol=0)


def test_seq2seq_and_unknown_formats_are_refused(translation_run, tagging_run, tmp_path):
    with pytest.raises(UserError, match="only tagging and sequence heads are exported; this run's head is 'seq2seq'"):
        export_run(translation_run, out=tmp_path / "m.onnx")
    with pytest.raises(UserError, match="unknown format 'tflite'"):
        export_run(tagging_run, fmt="tflite")
    assert not (tmp_path / "m.onnx").exists()
