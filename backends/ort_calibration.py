"""Bounded-memory activation calibration for onnxruntime.quantization (ORT int8 and QNN QDQ).

onnxruntime's calibrators add a ReduceMin/ReduceMax pair (or a histogram tap) after every tensor
they calibrate and run that augmented model in a session with the default execution order. That
order runs the taps last, so every calibrated activation of the whole network stays alive until
the end of each run: on the full-size SigLIP at 1120 patches one calibration run held 7 GB (the
16x1120x1120 attention maps of 27 layers), the arena kept two runs' worth (20 GB resident), and the
`ort` recipe's int8 export was OOM-killed on a 24 GB host. With `ExecutionOrder.PRIORITY_BASED`
each tap runs as soon as its tensor exists and the run needs 0.4 GB above the weights; the ranges
are the same numbers (the taps compute the same reductions in another order), which
tests/test_export.py checks byte for byte against onnxruntime's stock path.

The calibrator builds its session inside `quantize_static`, with no option to pass session
settings, so `bounded_calibration()` swaps in a session factory for the duration of the call
and restores onnxruntime's own afterwards. onnxruntime's temporary copy of the augmented model
(as large as the fp32 weights) goes into `work_dir`, so an export killed mid-calibration leaves
it inside the export's own staging directory instead of in /tmp.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()  # the swap is process-wide: one calibration at a time


def calibration_session_options():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as onnxruntime's own
    options.execution_order = ort.ExecutionOrder.PRIORITY_BASED  # taps run when their tensor is made
    options.log_severity_level = 3
    return options


@contextlib.contextmanager
def bounded_calibration(work_dir: Path | None = None):
    """Run onnxruntime.quantization's calibration inside this block with bounded memory."""
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import CalibraterBase

    def create_inference_session(self):
        self.infer_session = ort.InferenceSession(self.augmented_model_path, sess_options=calibration_session_options(),
                                                  providers=self.execution_providers)

    with _lock:
        stock_factory, stock_tempdir = CalibraterBase.create_inference_session, tempfile.tempdir
        CalibraterBase.create_inference_session = create_inference_session
        if work_dir is not None:
            tempfile.tempdir = str(work_dir)
        try:
            yield
        finally:
            CalibraterBase.create_inference_session = stock_factory
            tempfile.tempdir = stock_tempdir
