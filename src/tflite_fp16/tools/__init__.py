"""Tools beside the conversion pipeline, each importing only downward:

* :mod:`~tflite_fp16.tools.auto`: the tolerance search (returns the constants to keep float32)
* :mod:`~tflite_fp16.tools.widen`: back to float32
* :mod:`~tflite_fp16.tools.inspect`: what is in a file
* :mod:`~tflite_fp16.tools.batch`: many files, on a process pool or any executor
"""
