"""Quantization-aware training for TensorRT's explicit INT8: wrap a tf_keras model, fine-tune.

The recipe is the one TensorRT's explicit quantization wants (NVIDIA's TF2 quantization toolkit
does the same; the toolkit itself pins TF 2.8 and is not on PyPI, so we take the recipe, not
the package):

- symmetric INT8, narrow range ([-127, 127]), zero point 0;
- Q/DQ (``QuantizeAndDequantizeV3``, ``tf.quantization.quantize_and_dequantize_v3`` in
  TF 1.x; its gradient passes straight through) at the *input* of each Conv2D,
  DepthwiseConv2D and Dense layer, with one per-tensor range (``input_amax``, calibrated, then
  followed by a moving average while fine-tuning);
- Q/DQ on the weights, per output channel (the ONNX weight's axis 0 after tf2onnx's transpose;
  a DepthwiseConv2D with depth multiplier > 1 gets one range), from the weights themselves.

``_v3`` because on TF 2.21 the per-channel ``_v2``/``_v4`` ops with ``range_given`` fail
("input_min must be a scalar"). tf2onnx turns each op into QuantizeLinear/DequantizeLinear
INT8 with zero point 0; ``tx2-convert onnx`` keeps them (opset >= 13, not folded away), and
``tx2_inference.backends.tensorrt.qdq.readiness`` calls the result "explicit INT8 ready".

Usage (tf_keras, i.e. Keras 2: ``pip install tf-keras``, or build/qat-env)::

    from tx2_inference.convert.workstation import qat
    qmodel = qat.quantize_model(model)          # a copy, weights shared values
    qat.calibrate(qmodel, batches)              # ranges from a few real inputs
    qmodel.compile(...); qmodel.fit(...)        # fine-tune as usual
    qat.export_saved_model(qmodel, 'qat_savedmodel', [1, 128, 128, 3])
    # then: tx2-convert onnx qat_savedmodel -o model_qat.onnx

Keras 3 models are refused: tf2onnx cannot read a Keras 3 model's SavedModel export the same
way, Keras 3 layers have no ``tf.keras`` wrapper API, and TFMOT supports tf_keras only.
"""

from typing import Any, Iterable, List, Optional, Sequence

from tx2_inference.errors import UserError

NUM_BITS = 8
#: The moving average of the input range while fine-tuning.
MOMENTUM = 0.99


def _tf_keras() -> Any:
    """Import tf_keras or say how to get it."""
    try:
        import tf_keras
    except ImportError:
        raise UserError('QAT needs tf_keras (Keras 2): pip install tf-keras==2.21.0 (matching '
                        'TensorFlow 2.21), or run in build/qat-env (tools/setup_qat_env.sh).'
                        ) from None
    return tf_keras


def check_model(model: Any) -> None:
    """Refuse anything but a tf_keras (Keras 2) model, saying why and what to do.

    :raises UserError: a Keras 3 model, or not a Keras model at all.
    """
    tf_keras = _tf_keras()
    if isinstance(model, tf_keras.Model):
        return
    module = type(model).__module__ or ''
    if module.startswith('keras'):
        raise UserError('{} is a Keras 3 model: the QAT wrapper needs a tf_keras (Keras 2) '
                        'model, because Keras 3 has no tf.keras layer-wrapper API, tf2onnx '
                        'reads Keras 2 SavedModels, and TensorFlow Model Optimization supports '
                        'tf_keras only. Build the model with `import tf_keras as keras` (or set '
                        'TF_USE_LEGACY_KERAS=1 before importing TensorFlow).'.format(
                            type(model).__name__))
    raise UserError('quantize_model expects a tf_keras.Model, got {}.'.format(
        type(model).__name__))


def fake_quant(x: Any, amax: Any, axis: Optional[int] = None) -> Any:
    """Return symmetric narrow-range INT8 quantize-dequantize of ``x`` in [-amax, amax].

    ``amax`` is a scalar, or one value per index of ``axis`` (per-channel).
    """
    import tensorflow as tf
    amax = tf.maximum(tf.cast(amax, x.dtype), 1e-8)
    return tf.raw_ops.QuantizeAndDequantizeV3(
        input=x, input_min=-amax, input_max=amax, num_bits=tf.constant(NUM_BITS),
        signed_input=True, range_given=True, narrow_range=True,
        axis=-1 if axis is None else axis)


def _weight_axis(layer: Any) -> Optional[int]:
    """Return the per-channel axis of ``layer``'s kernel, or None for one range."""
    tf_keras = _tf_keras()
    if isinstance(layer, tf_keras.layers.DepthwiseConv2D):
        return 2 if int(layer.depth_multiplier) == 1 else None
    return len(layer.kernel.shape) - 1


def _make_wrapper_class() -> Any:
    """Build the wrapper class on first use (tf_keras is imported only then)."""
    import tensorflow as tf
    tf_keras = _tf_keras()

    class QuantizeWrapper(tf_keras.layers.Wrapper):
        """Q/DQ on the input and on the kernel of a Conv2D, DepthwiseConv2D or Dense layer."""

        def build(self, input_shape: Any) -> None:
            """Build the layer and the input range (0 until calibrated)."""
            if not self.layer.built:
                self.layer.build(input_shape)
            self.input_amax = self.add_weight(name='input_amax', shape=(), trainable=False,
                                              initializer='zeros')
            self.calibrating = False
            super(QuantizeWrapper, self).build(input_shape)

        def _kernel_name(self) -> str:
            return 'depthwise_kernel' if hasattr(self.layer, 'depthwise_kernel') else 'kernel'

        def quantized_kernel(self) -> Any:
            """Return the kernel fake-quantized per output channel (its own max |w|)."""
            kernel = getattr(self.layer, self._kernel_name())
            axis = _weight_axis(self.layer)
            if axis is None:
                return fake_quant(kernel, tf.reduce_max(tf.abs(kernel)))
            others = [k for k in range(len(kernel.shape)) if k != axis]
            return fake_quant(kernel, tf.reduce_max(tf.abs(kernel), axis=others), axis)

        def call(self, inputs: Any, training: Any = None) -> Any:
            """Quantize the input (and update its range), run the layer on quantized weights."""
            batch_max = tf.reduce_max(tf.abs(inputs))
            if self.calibrating:
                self.input_amax.assign(tf.maximum(self.input_amax, batch_max))
                x = inputs
            else:
                if training:
                    new = tf.where(self.input_amax > 0.0,
                                   MOMENTUM * self.input_amax + (1.0 - MOMENTUM) * batch_max,
                                   batch_max)
                    self.input_amax.assign(new)
                x = fake_quant(inputs, self.input_amax)
            name = self._kernel_name()
            kernel = getattr(self.layer, name)
            qkernel = kernel if self.calibrating else self.quantized_kernel()
            return _call_with_kernel(self.layer, name, qkernel, x)

    return QuantizeWrapper


def _call_with_kernel(layer: Any, name: str, kernel: Any, x: Any) -> Any:
    """Run ``layer`` on ``x`` with ``kernel`` in place of its own (same bias, activation)."""
    import tensorflow as tf
    tf_keras = _tf_keras()
    if isinstance(layer, tf_keras.layers.DepthwiseConv2D):
        strides = (1,) + tuple(layer.strides) + (1,)
        y = tf.nn.depthwise_conv2d(x, kernel, strides, layer.padding.upper(),
                                   dilations=layer.dilation_rate)
    elif isinstance(layer, tf_keras.layers.Conv2D):
        y = tf.nn.conv2d(x, kernel, layer.strides, layer.padding.upper(),
                         dilations=layer.dilation_rate)
    else:
        y = tf.tensordot(x, kernel, [[len(x.shape) - 1], [0]])
    if getattr(layer, 'use_bias', False):
        y = tf.nn.bias_add(y, layer.bias)
    return layer.activation(y) if layer.activation is not None else y


_WRAPPER = []  # type: List[Any]


def wrapper_class() -> Any:
    """Return the QuantizeWrapper class (a tf_keras Wrapper)."""
    if not _WRAPPER:
        _WRAPPER.append(_make_wrapper_class())
    return _WRAPPER[0]


def _quantizable(layer: Any) -> bool:
    tf_keras = _tf_keras()
    if type(layer) in (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D):
        return layer.data_format == 'channels_last' and int(getattr(layer, 'groups', 1)) == 1
    return type(layer) is tf_keras.layers.Dense


def quantize_model(model: Any, skip: Sequence[str] = ()) -> Any:
    """Return a copy of ``model`` with every Conv2D, DepthwiseConv2D and Dense layer wrapped.

    The copy starts from the model's weights. Layers named in ``skip`` stay in float (e.g. a
    sensitive last layer).

    :raises UserError: a Keras 3 model or no layer to quantize.
    """
    check_model(model)
    tf_keras = _tf_keras()
    wrapper = wrapper_class()
    wrapped = []  # type: List[str]

    def clone(layer: Any) -> Any:
        fresh = layer.__class__.from_config(layer.get_config())
        if _quantizable(layer) and layer.name not in skip:
            wrapped.append(layer.name)
            return wrapper(fresh, name='quant_' + layer.name)
        return fresh

    qmodel = tf_keras.models.clone_model(model, clone_function=clone)
    if not wrapped:
        raise UserError('{!r} has no Conv2D, DepthwiseConv2D or Dense layer to quantize.'.format(
            model.name))
    by_name = {layer.name: layer for layer in model.layers}
    for layer in qmodel.layers:
        inner = layer.layer if isinstance(layer, wrapper) else layer
        src = by_name.get(inner.name)
        if src is not None and src.weights:
            inner.set_weights(src.get_weights())
    return qmodel


def quantized_layers(model: Any) -> List[Any]:
    """Return the QuantizeWrapper layers of ``model``."""
    wrapper = wrapper_class()
    return [layer for layer in model.layers if isinstance(layer, wrapper)]


def calibrate(model: Any, batches: Iterable[Any]) -> int:
    """Set every input range to the largest |input| seen on ``batches`` (float, no Q/DQ).

    :returns: the number of batches run.
    :raises UserError: no batch, or a layer whose input was all zeros.
    """
    layers = quantized_layers(model)
    for layer in layers:
        layer.input_amax.assign(0.0)
        layer.calibrating = True
    count = 0
    try:
        for batch in batches:
            model(batch, training=False)
            count += 1
    finally:
        for layer in layers:
            layer.calibrating = False
    if not count:
        raise UserError('calibrate needs at least one batch of real inputs.')
    dead = [layer.name for layer in layers if float(layer.input_amax.numpy()) <= 0.0]
    if dead:
        raise UserError('calibration saw only zeros at the input of {}: calibrate on real '
                        'inputs.'.format(', '.join(dead)))
    return count


def export_saved_model(model: Any, path: str, input_shape: Sequence[int],
                       input_name: str = 'image', dtype: str = 'float32') -> None:
    """Save ``model`` as a SavedModel with one fixed-shape serving signature.

    The outputs keep the model's output names (a dict model) or ``output_0``, ... .
    :raises UserError: a QAT model whose ranges were never calibrated.
    """
    import tensorflow as tf
    unset = [layer.name for layer in quantized_layers(model)
             if float(layer.input_amax.numpy()) <= 0.0]
    if unset:
        raise UserError('{} have no input range: run qat.calibrate (or fine-tune) before '
                        'exporting.'.format(', '.join(unset)))
    spec = tf.TensorSpec(list(input_shape), tf.as_dtype(dtype), name=input_name)

    @tf.function(input_signature=[spec])
    def serve(x: Any) -> Any:
        out = model(x, training=False)
        if isinstance(out, dict):
            return out
        if isinstance(out, (list, tuple)):
            return {'output_{}'.format(k): o for k, o in enumerate(out)}
        return {'output_0': out}

    tf.saved_model.save(model, path, signatures={'serving_default': serve})
