"""The TFLite file format: the in-memory model, the bounded reader, the streaming writer and
safe paths. Nothing here knows of float16; the conversion builds on it.

* :mod:`~tflite_fp16.format.model`: immutable :class:`~tflite_fp16.format.model.Table` records
* :mod:`~tflite_fp16.format.reader`: a file (memory-mapped) or bytes to a model, every offset checked
* :mod:`~tflite_fp16.format.writer`: a model to a file or bytes, aligned, streamed, atomic
* :mod:`~tflite_fp16.format.paths`: input and output paths checked before any work; atomic writes
"""
