"""Build the example's detector: a small Keras model with a GFL-style head, as a SavedModel.

Workstation only (TensorFlow, Keras 3). ``python build_model.py OUT_DIR`` writes the
SavedModel; convert it with::

    tx2-convert onnx OUT_DIR -o gfl.onnx --decoder gfl --labels a,b,c --scale 0.00392156862745098

The head has one stride (8) on a 64 x 64 input: 64 anchor points, each with 3 class logits
(``cls`` [1, 64, 3]) and 4 sides x 8 distance bins (``reg`` [1, 64, 32]). Its weights are
random (seeded): it is a stand-in for a trained detector's head, with its real layout.
"""

import sys

INPUT = 64
CLASSES = 3
REG_MAX = 7


def build(path: str, seed: int = 0) -> str:
    """Export the model as a SavedModel at ``path``; return ``path``."""
    import keras
    keras.utils.set_random_seed(seed)
    image = keras.Input((INPUT, INPUT, 3), batch_size=1, name='image')
    x = image
    for filters in (16, 32, 32):  # stride 8
        x = keras.layers.Conv2D(filters, 3, strides=2, padding='same', activation='relu')(x)
    points = (INPUT // 8) ** 2
    # Wide initial weights, so that the untrained head's scores and boxes spread as a trained
    # one's do (Keras' default leaves every sigmoid score near 0.5).
    wide = keras.initializers.RandomNormal(stddev=1.5, seed=seed)
    cls = keras.layers.Reshape((points, CLASSES))(
        keras.layers.Conv2D(CLASSES, 1, kernel_initializer=wide)(x))
    reg = keras.layers.Reshape((points, 4 * (REG_MAX + 1)))(
        keras.layers.Conv2D(4 * (REG_MAX + 1), 1, kernel_initializer=wide)(x))
    model = keras.Model(image, {'cls': cls, 'reg': reg})
    model.export(path, format='tf_saved_model', verbose=False)
    return path


if __name__ == '__main__':
    build(sys.argv[1])
