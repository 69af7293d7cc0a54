"""Converting a model for batches (issue 16): the options that need no TensorFlow.

``tx2-convert onnx --batch`` itself (a TensorFlow conversion) runs in
test_multi_camera_node.py's ``batch_model`` fixture, whose model then batches in a real graph.
"""

import pytest

from tx2_inference.convert.cli import batch_profiles, main
from tx2_inference.core.model_config import ModelConfig
from tx2_inference.errors import ConfigError, UserError


def test_engine_batch_gives_profiles_for_batches_one_to_n(conv_onnx_model):
    # conv_onnx_model's input x is [N, 16, 64, 64]: a free batch.
    assert batch_profiles(conv_onnx_model, 4) == 'x:1x16x64x64:4x16x64x64:4x16x64x64'


def test_engine_batch_on_a_fixed_batch_model_says_how_to_convert_it(default_model, capsys):
    with pytest.raises(UserError, match='tx2-convert onnx --batch dynamic'):
        batch_profiles(default_model, 4)  # image_tensor:0 is [1, 300, 300, 3]
    assert main(['engine', default_model, '--batch', '4']) == 2
    assert 'free first dimension' in capsys.readouterr().err


def test_onnx_batch_must_be_a_number_or_dynamic():
    from tx2_inference.convert.workstation.tf_onnx import with_batch
    specs = [('x:0', [1, 8, 8, 3])]
    assert with_batch(specs, '4', {}) == [('x:0', [4, 8, 8, 3])]
    assert with_batch(specs, 'dynamic', {}) == [('x:0', [-1, 8, 8, 3])]
    assert with_batch([('x:0', None)], '2', {'x:0': [1, 8, 8, 3]}) == [('x:0', [2, 8, 8, 3])]
    for bad in ('0', 'many'):
        with pytest.raises(UserError, match='--batch'):
            with_batch(specs, bad, {})
    with pytest.raises(UserError, match='unknown'):
        with_batch([('x:0', None)], '2', {})


def test_the_model_config_records_the_largest_batch():
    assert ModelConfig({'batch': 4}).input['batch'] == 4
    assert ModelConfig({'batch': -1}).input['batch'] == -1  # dynamic
    for bad in (0, -2, 2.5, 'four', True):
        with pytest.raises(ConfigError, match='input.batch'):
            ModelConfig({'batch': bad})
