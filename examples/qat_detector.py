#!/usr/bin/env python3
r"""Quantization-aware training of a small person detector, on CPU, in a few steps.

Run in the QAT environment (tf-keras; ``tools/setup_qat_env.sh`` makes build/qat-env)::

    build/qat-env/bin/python examples/qat_detector.py --frames FOOTAGE --out OUT

1. Labels without labelling: the default person model (``models/ssdlite_person.onnx``, ONNX
   Runtime) detects people on the frames of FOOTAGE (a folder of images or a video); its boxes
   with score >= 0.5 are the targets (distillation).
2. A small tf_keras detector (160x160 input, 20x20 grid of boxes, depthwise-separable
   convolutions, 8.8 k parameters) is trained in FP32 for ``--steps`` steps and exported:
   ``OUT/fp32_savedmodel``.
3. The same model wrapped by :func:`tx2_inference.convert.workstation.qat.quantize_model`
   (symmetric INT8 Q/DQ on layer inputs and per-channel weights), calibrated on 8 frames and
   fine-tuned for ``--qat-steps`` steps: ``OUT/qat_savedmodel``.
4. With ``--tfmot``, the FP32 model through TensorFlow Model Optimization's
   ``quantize_model`` (its default, asymmetric recipe) for comparison: ``OUT/tfmot_savedmodel``.
   With ``--tuned``, the FP32 model fine-tuned as many steps as QAT, without Q/DQ:
   ``OUT/fp32_tuned_savedmodel`` (what the extra training alone changes).

Then convert as usual (outside this environment, or in it)::

    tx2-convert onnx OUT/qat_savedmodel -o qat.onnx $(cat OUT/onnx_args.txt)
    tx2-convert fold-qdq qat.onnx -o qat_folded.onnx      # FP16 on a TX2 (no fast INT8)
    tx2-convert evaluate --footage VIDEO --tf OUT/fp32_savedmodel --tf-config qat.yaml \\
        --onnx fp32.onnx --onnx qat.onnx --onnx qat_folded.onnx ...

``OUT/example.json`` records the losses and the figures of each step.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SIZE = 160
GRID = 20
#: The options `tx2-convert onnx` needs for these SavedModels (the model config).
ONNX_ARGS = ['--decoder', 'boxes_scores', '--boxes', 'boxes', '--scores', 'scores',
             '--box-format', 'yxyx', '--box-units', 'normalized', '--score-activation', 'none',
             '--background-class', '0', '--labels', 'person', '--scale', str(1 / 255.0),
             '--resize', 'stretch', '--color', 'rgb', '--layout', 'nhwc']


def teacher_targets(frames, teacher):
    """Return the teacher's person boxes (normalised yxyx, score >= 0.5) per frame."""
    from tx2_inference.core.decoders import DetectionParams
    from tx2_inference.detector import Detector
    targets = []
    with Detector(teacher, backend='onnxruntime', depth=1) as det:
        det.params = DetectionParams(score_threshold=0.5, iou_threshold=0.45)
        for _, img in frames:
            d = det.detect(img, 'rgb')
            h, w = img.shape[:2]
            targets.append(np.array([[b[1] / h, b[0] / w, b[3] / h, b[2] / w]
                                     for b in d.boxes], np.float32).reshape(-1, 4))
    return targets


def encode(targets):
    """Return per-cell targets: class [n, G*G] (1 person) and boxes [n, G*G, 4]."""
    cls = np.zeros((len(targets), GRID * GRID), np.int32)
    box = np.zeros((len(targets), GRID * GRID, 4), np.float32)
    for k, t in enumerate(targets):
        for y1, x1, y2, x2 in t:
            i = min(int((y1 + y2) / 2 * GRID), GRID - 1)
            j = min(int((x1 + x2) / 2 * GRID), GRID - 1)
            cls[k, i * GRID + j] = 1
            box[k, i * GRID + j] = (y1, x1, y2, x2)
    return cls, box


def build_detector():
    """Return the small tf_keras detector: image [1, 160, 160, 3] 0-1 -> boxes, scores."""
    import tensorflow as tf
    import tf_keras as keras
    layers = keras.layers
    inp = keras.Input((SIZE, SIZE, 3), name='image')
    x = layers.Conv2D(16, 3, strides=2, padding='same', activation='relu', name='stem')(inp)
    for k, (ch, stride) in enumerate(((32, 2), (64, 2), (64, 1))):
        x = layers.DepthwiseConv2D(3, strides=stride, padding='same', activation='relu',
                              name='dw{}'.format(k))(x)
        x = layers.Conv2D(ch, 1, activation='relu', name='pw{}'.format(k))(x)
    head = layers.Conv2D(6, 1, name='head')(x)  # per cell: dy, dx, h, w, background, person
    head = layers.Reshape((GRID * GRID, 6), name='cells')(head)
    centres = np.stack(np.meshgrid(np.arange(GRID), np.arange(GRID), indexing='ij'), -1)
    centres = ((centres.reshape(1, -1, 2) + 0.5) / GRID).astype(np.float32)

    def decode(t):
        c = tf.constant(centres) + tf.tanh(t[..., 0:2]) / GRID
        hw = tf.sigmoid(t[..., 2:4]) * 0.6
        return tf.concat([c - hw / 2, c + hw / 2], -1)

    boxes = layers.Lambda(decode, name='boxes')(head)
    scores = layers.Lambda(lambda t: tf.nn.softmax(t[..., 4:6]), name='scores')(head)
    return keras.Model(inp, {'boxes': boxes, 'scores': scores}, name='small_detector')


def train(model, images, cls, box, steps, lr, batch=8, seed=0):
    """Train with class cross-entropy (persons weighted) + L1 on the persons' boxes."""
    import tensorflow as tf
    import tf_keras as keras
    opt = keras.optimizers.Adam(lr)
    rng = np.random.RandomState(seed)
    losses = []

    @tf.function
    def step(x, c, b):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            pos = tf.cast(c, tf.float32)
            ce = -tf.math.log(tf.gather(out['scores'], c, batch_dims=2) + 1e-6)
            cls_loss = tf.reduce_sum(ce * (1.0 + 9.0 * pos)) / tf.cast(tf.size(c), tf.float32)
            l1 = tf.reduce_sum(tf.abs(out['boxes'] - b), -1) * pos
            loss = cls_loss + 10.0 * tf.reduce_sum(l1) / tf.maximum(tf.reduce_sum(pos), 1.0)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for _ in range(steps):
        idx = rng.randint(0, len(images), batch)
        losses.append(float(step(images[idx], cls[idx], box[idx])))
    return losses


def main(argv=None):
    """Distil, train FP32, wrap for QAT, calibrate, fine-tune, export."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--frames', required=True, help='folder of images or a video')
    p.add_argument('--every', type=int, default=1, help='video: every Nth frame')
    p.add_argument('--max-frames', type=int, default=None)
    p.add_argument('--teacher', default=os.path.join(ROOT, 'models', 'ssdlite_person.onnx'))
    p.add_argument('--out', required=True)
    p.add_argument('--steps', type=int, default=60, help='FP32 training steps (batch 8)')
    p.add_argument('--qat-steps', type=int, default=20, help='QAT fine-tuning steps')
    p.add_argument('--tfmot', action='store_true', help='also a TFMOT quantize_model export')
    p.add_argument('--tuned', action='store_true', help='also the FP32 model fine-tuned as '
                   'long as QAT (fp32_tuned_savedmodel): what the extra steps alone change')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    import cv2
    import tensorflow as tf

    from tx2_inference.convert.workstation import footage, qat
    tf.random.set_seed(a.seed)
    t0 = time.time()
    frames = footage.read_frames(a.frames, a.every, a.max_frames)
    targets = teacher_targets(frames, a.teacher)
    images = np.stack([cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
                       for _, img in frames]).astype(np.float32) / 255.0
    cls, box = encode(targets)
    print('{} frames, {} teacher boxes'.format(len(frames), int(cls.sum())), flush=True)
    model = build_detector()
    fp32_losses = train(model, images, cls, box, a.steps, 3e-3, seed=a.seed)
    print('FP32: {} steps, loss {:.3f} -> {:.3f}'.format(a.steps, fp32_losses[0],
                                                         fp32_losses[-1]), flush=True)
    os.makedirs(a.out, exist_ok=True)
    qat.export_saved_model(model, os.path.join(a.out, 'fp32_savedmodel'), [1, SIZE, SIZE, 3])
    qmodel = qat.quantize_model(model, skip=())
    batches = [images[k:k + 1] for k in range(0, min(len(images), 8))]
    qat.calibrate(qmodel, batches)
    qat_losses = train(qmodel, images, cls, box, a.qat_steps, 5e-4, seed=a.seed + 1)
    print('QAT: {} layers wrapped, {} steps, loss {:.3f} -> {:.3f}'.format(
        len(qat.quantized_layers(qmodel)), a.qat_steps, qat_losses[0], qat_losses[-1]),
        flush=True)
    qat.export_saved_model(qmodel, os.path.join(a.out, 'qat_savedmodel'), [1, SIZE, SIZE, 3])
    record = {'frames': len(frames), 'teacher_boxes': int(cls.sum()), 'steps': a.steps,
              'qat_steps': a.qat_steps, 'fp32_loss': [fp32_losses[0], fp32_losses[-1]],
              'qat_loss': [qat_losses[0], qat_losses[-1]],
              'wrapped_layers': [layer.name for layer in qat.quantized_layers(qmodel)]}
    if a.tfmot:
        record['tfmot'] = export_tfmot(model, images, os.path.join(a.out, 'tfmot_savedmodel'))
    if a.tuned:
        tuned_losses = train(model, images, cls, box, a.qat_steps, 5e-4, seed=a.seed + 1)
        qat.export_saved_model(model, os.path.join(a.out, 'fp32_tuned_savedmodel'),
                               [1, SIZE, SIZE, 3])
        record['fp32_tuned_loss'] = [tuned_losses[0], tuned_losses[-1]]
    with open(os.path.join(a.out, 'onnx_args.txt'), 'w') as f:
        f.write(' '.join(ONNX_ARGS) + '\n')
    record['seconds'] = time.time() - t0
    with open(os.path.join(a.out, 'example.json'), 'w') as f:
        json.dump(record, f, indent=1)
    print('Wrote {} ({:.0f} s). Next: tx2-convert onnx {}/qat_savedmodel -o qat.onnx {}'.format(
        a.out, record['seconds'], a.out, ' '.join(ONNX_ARGS)))
    return 0


def export_tfmot(model, images, path):
    """TFMOT's default QAT (asymmetric activations) of the model's convolutional trunk."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    # TFMOT quantizes Conv/Dense/activations it knows; the Lambda decoding stays float.
    trunk = keras.Model(model.input, model.get_layer('head').output, name='trunk')
    qtrunk = tfmot.quantization.keras.quantize_model(trunk)
    qtrunk.compile('adam', 'mse')
    qtrunk.fit(images[:8], trunk.predict(images[:8], verbose=0), epochs=1, verbose=0)
    from tx2_inference.convert.workstation import qat
    qat.export_saved_model(qtrunk, path, [1, SIZE, SIZE, 3])
    return {'path': path, 'layers': len(qtrunk.layers)}


if __name__ == '__main__':
    sys.exit(main())
