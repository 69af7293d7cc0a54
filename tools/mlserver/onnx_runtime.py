"""An MLServer runtime that serves an ONNX model with ONNX Runtime over KServe V2 (as Triton).

MLServer (Seldon) implements the same KServe V2 gRPC protocol as NVIDIA Triton Inference
Server, and installs from the package index where Triton's server does not: the tests and the
benchmark start it (``tx2_inference.tools.kserve_server``) to run the ``triton`` backend against
a real server. It runs in its own virtual environment (``build/mlserver-venv``, made by
tools/setup_env.sh from requirements/mlserver.txt), not the node's.

model-settings.json: ``parameters.uri`` the absolute path of the ``.onnx``; ``parameters.extra``
may hold ``threads`` (ONNX Runtime intra-op threads, 0: its default) and ``delay_file``: while
that file exists, each request first waits the seconds written in it (a slow server, for the
timeout tests).
"""

import asyncio
import os

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor
from mlserver.utils import get_model_uri
import onnxruntime

_DATATYPES = {
    'tensor(float)': 'FP32', 'tensor(float16)': 'FP16', 'tensor(double)': 'FP64',
    'tensor(uint8)': 'UINT8', 'tensor(int8)': 'INT8', 'tensor(int16)': 'INT16',
    'tensor(int32)': 'INT32', 'tensor(int64)': 'INT64', 'tensor(bool)': 'BOOL',
}


def _metadata(args):
    """ONNX Runtime's inputs or outputs -> KServe V2 tensor metadata (-1 where dynamic)."""
    return [MetadataTensor(name=a.name, datatype=_DATATYPES[a.type],
                           shape=[d if isinstance(d, int) and d >= 0 else -1 for d in a.shape])
            for a in args]


class OnnxRuntimeModel(MLModel):
    """Serve one ONNX model; its metadata (inputs, outputs) comes from the model itself."""

    async def load(self) -> bool:
        """Open the model in an ONNX Runtime session on CPU."""
        uri = await get_model_uri(self._settings)
        parameters = self._settings.parameters
        extra = (parameters.extra if parameters is not None else None) or {}
        self._delay_file = extra.get('delay_file') or ''
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(extra.get('threads', 0))
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(uri, sess_options=options,
                                                     providers=['CPUExecutionProvider'])
        self._names = [a.name for a in self._session.get_outputs()]
        self.inputs = _metadata(self._session.get_inputs())
        self.outputs = _metadata(self._session.get_outputs())
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Run one request (in a worker thread: the event loop keeps answering)."""
        feeds = {item.name: NumpyCodec.decode_input(item) for item in payload.inputs}
        if self._delay_file and os.path.exists(self._delay_file):
            with open(self._delay_file) as f:
                await asyncio.sleep(float(f.read().strip() or 0))
        loop = asyncio.get_event_loop()
        values = await loop.run_in_executor(None, self._session.run, None, feeds)
        return InferenceResponse(
            model_name=self.name, model_version=self.version,
            outputs=[NumpyCodec.encode_output(name, value)
                     for name, value in zip(self._names, values)])
