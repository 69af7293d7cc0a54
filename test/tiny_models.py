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

# A CenterNet-like detector (``python -c CENTERNET_SCRIPT out_dir``), exported as a SavedModel:
# a conv backbone at stride 4, a class heatmap (sigmoid), size and offset heads, peaks kept by
# a 3x3 max pool, TopK over every class and position, and one packed output ``detections``
# [1, K, 6] = (ymin, xmin, ymax, xmax) in input pixels, score, class, as CenterNet's exported
# graphs give. Weights are seeded random, scaled so the heatmap has clear peaks.
CENTERNET_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    SIZE, CLASSES, K = 128, 3, 20
    rng = np.random.RandomState(0)
    def conv(c_in, c_out, scale=1.0):
        w = rng.randn(3, 3, c_in, c_out) * scale * np.sqrt(2.0 / (9 * c_in))
        return tf.Variable(w.astype(np.float32))
    class CenterNet(tf.Module):
        def __init__(self):
            self.backbone = [(conv(3, 32), 2), (conv(32, 64), 2), (conv(64, 64), 1),
                             (conv(64, 96), 1), (conv(96, 96), 1), (conv(96, 64), 1)]
            self.heat, self.wh, self.off = conv(64, CLASSES, 3.0), conv(64, 2), conv(64, 2)
        @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32,
                                                    name='image')])
        def __call__(self, image):
            x = image / 255.0
            for w, stride in self.backbone:
                x = tf.nn.relu(tf.nn.conv2d(x, w, stride, 'SAME'))
            heat = tf.sigmoid(tf.nn.conv2d(x, self.heat, 1, 'SAME'))
            wh = tf.nn.softplus(tf.nn.conv2d(x, self.wh, 1, 'SAME')) * 8.0
            off = tf.sigmoid(tf.nn.conv2d(x, self.off, 1, 'SAME'))
            peaks = tf.cast(tf.equal(heat, tf.nn.max_pool2d(heat, 3, 1, 'SAME')), tf.float32)
            side = SIZE // 4
            scores, index = tf.math.top_k(tf.reshape(heat * peaks, [1, -1]), K)
            cls = index % CLASSES
            pos = index // CLASSES
            ys = tf.cast(pos // side, tf.float32)
            xs = tf.cast(pos % side, tf.float32)
            wh_k = tf.gather(tf.reshape(wh, [1, -1, 2]), pos, batch_dims=1)
            off_k = tf.gather(tf.reshape(off, [1, -1, 2]), pos, batch_dims=1)
            cy, cx = (ys + off_k[..., 1]) * 4.0, (xs + off_k[..., 0]) * 4.0
            h, w = wh_k[..., 1], wh_k[..., 0]
            return {'detections': tf.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2,
                                            scores, tf.cast(cls, tf.float32)], axis=-1)}
    model = CenterNet()
    tf.saved_model.save(model, sys.argv[1], signatures=model.__call__.get_concrete_function())
""")
