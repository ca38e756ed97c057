"""Write the example models of this folder (run from the repository root):

    python examples/make_examples.py

* ``audio_frontend.tflite``: ``features = log(max(min(audio * 256, +inf), 1e-10)) + bias``,
  the shape of real audio front-ends (wake-word detectors, audio classifiers). Its
  ``+inf`` clamp and ``1e-10`` epsilon cannot be float16: tflite-fp16 keeps them
  float32 by default, while TensorFlow's rule (``--lossy convert``) breaks the model.
* ``audio_frontend_inputs.npz``: inputs for ``--verify --inputs``: digital silence,
  a loud tone at int16 scale and quiet noise, as three samples of the input ``audio``.
* ``small_cnn.tflite``: a small Keras CNN converted by TensorFlow 2.21 (from tests/data).
* ``filterbank.tflite``: two nearly equal "filter banks" whose difference is the signal,
  then a dense layer: float16 rounding of the banks is amplified (``--auto`` finds them).
* ``filterbank_calibration.npz``: two samples of its input ``signal`` (shape (2, 1, 16)).
* ``small_cnn_inputs.npz``: four 32 x 32 RGB images in [0, 1] for ``small_cnn.tflite``'s
  input ``keras_tensor`` (shape (4, 1, 32, 32, 3)).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import tflite_builder as tb  # noqa: E402


def main() -> None:
    (HERE / "audio_frontend.tflite").write_bytes(tb.build(tb.frontend_model()))
    t = np.arange(8, dtype=np.float32)
    samples = np.stack(
        [
            np.zeros((1, 8), np.float32),  # digital silence
            (20000 * np.sin(2 * np.pi * t / 8)).reshape(1, 8).astype(np.float32),  # a loud tone, int16 scale
            (0.01 * np.random.default_rng(0).standard_normal((1, 8))).astype(np.float32),  # quiet noise
        ]
    )
    np.savez(HERE / "audio_frontend_inputs.npz", audio=samples)
    shutil.copyfile(HERE.parent / "tests" / "data" / "small_cnn.fp32.tflite", HERE / "small_cnn.tflite")
    (HERE / "filterbank.tflite").write_bytes(tb.build(tb.filterbank_model()))
    np.savez(
        HERE / "filterbank_calibration.npz",
        signal=np.random.default_rng(1).standard_normal((2, 1, 16)).astype(np.float32),
    )
    images = np.random.default_rng(2).random((4, 1, 32, 32, 3)).astype(np.float32)
    np.savez(HERE / "small_cnn_inputs.npz", keras_tensor=images)


if __name__ == "__main__":
    main()
