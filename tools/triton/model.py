"""A Triton Python-backend model that runs an ONNX model with ONNX Runtime in ``execute``.

NVIDIA's ``tritonserver`` from the ``nvidia-pytriton`` wheel (tools/setup_triton.py) carries
the Python backend but not the onnxruntime backend; this model serves an ``.onnx`` through it,
for the ``triton`` backend's tests and benchmark (``tx2_inference.tools.triton_server``). It
runs in the Python backend's stub process, whose interpreter is the project's virtual
environment (the server is started with that environment's ``bin`` first on ``PATH``).

config.pbtxt ``parameters`` (all optional): ``onnx_path`` (default: ``model.onnx`` in the
version folder, as ``tx2-convert triton-repo`` writes it), ``threads`` (ONNX Runtime intra-op
threads, 0: its default) and ``delay_file`` (while that file exists, each execution first waits
up to the seconds written in it, less when the file goes or the client cancels: a slow server,
for the timeout tests).

With ``max_batch_size`` > 0 and ``dynamic_batching`` in config.pbtxt, Triton hands ``execute``
several requests at once: they run as one ONNX Runtime call when the model's first dimension
is free, else one call each.
"""

import json
import os
import time

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel(object):
    """One ONNX Runtime session per model instance, on CPU."""

    def initialize(self, args):
        """Open the session named by the model's parameters."""
        config = json.loads(args['model_config'])
        parameters = {key: value.get('string_value', '')
                      for key, value in (config.get('parameters') or {}).items()}
        path = parameters.get('onnx_path') or os.path.join(
            args['model_repository'], args['model_version'], 'model.onnx')
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(parameters.get('threads') or 0)
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(path, sess_options=options,
                                                    providers=['CPUExecutionProvider'])
        self.inputs = [a.name for a in self.session.get_inputs()]
        self.outputs = [a.name for a in self.session.get_outputs()]
        first = [a.shape[0] if a.shape else 1 for a in self.session.get_inputs()]
        self.free_batch = all(not isinstance(d, int) or d < 0 for d in first)
        self.delay_file = parameters.get('delay_file') or ''

    def _delay(self, requests):
        """Wait while the delay file exists, up to its seconds (or until the client gives up)."""
        if not (self.delay_file and os.path.exists(self.delay_file)):
            return
        with open(self.delay_file) as f:
            deadline = time.monotonic() + float(f.read().strip() or 0)
        while time.monotonic() < deadline and os.path.exists(self.delay_file):
            if all(r.is_cancelled() for r in requests):
                return
            time.sleep(0.02)

    def execute(self, requests):
        """Answer every request Triton hands over (several when it batched them)."""
        self._delay(requests)
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy()
                  for name in self.inputs} for r in requests]
        if self.free_batch and len(feeds) > 1:
            rows = [len(f[self.inputs[0]]) for f in feeds]
            joined = self.session.run(None, {name: np.concatenate([f[name] for f in feeds])
                                             for name in self.inputs})
            ends = np.cumsum(rows)
            results = [[value[end - n:end] for value in joined] for n, end in zip(rows, ends)]
        else:
            results = [self.session.run(None, f) for f in feeds]
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(name, np.ascontiguousarray(value))
            for name, value in zip(self.outputs, values)]) for values in results]
