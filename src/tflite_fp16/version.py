"""The package's version, in one place: ``tflite_fp16.__version__`` and the reports read it here."""

__version__ = "0.1.0"
