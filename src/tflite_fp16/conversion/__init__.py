"""The float16 conversion: pure functions of a model and :class:`~tflite_fp16.options.Options`.

* :mod:`~tflite_fp16.conversion.plan`: what to convert, and why not the rest
* :mod:`~tflite_fp16.conversion.cast`: float32 -> float16 in NumPy, chunked, with exact statistics
* :mod:`~tflite_fp16.conversion.edit`: the plan applied to a new model (DEQUANTIZE ops added)
* :mod:`~tflite_fp16.conversion.metadata`: what a float16 model declares about itself
"""
