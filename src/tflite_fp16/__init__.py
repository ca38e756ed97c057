"""tflite-fp16: rewrite a float32 TensorFlow Lite model as float16, without TensorFlow."""
