"""Tiny real models the tests build (TensorFlow runs in a subprocess, so it stays out of tests).

``python -c TFLITE_SCRIPT out.tflite`` converts a small TensorFlow function to a real .tflite:
x float32 [1, 8, 8, 3] -> 'doubled' (2 * x + 1) and 'total' (sum of x).
"""

import textwrap

TFLITE_SCRIPT = textwrap.dedent("""
    import sys
    import tensorflow as tf
    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32, name='x')])
    def f(x):
        return {'doubled': x * 2.0 + 1.0, 'total': tf.reduce_sum(x, axis=[1, 2, 3])}
    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    open(sys.argv[1], 'wb').write(converter.convert())
""")
