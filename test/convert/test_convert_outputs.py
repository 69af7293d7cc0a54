"""The converters never destroy a user's file (issue 22, item 6).

``quantize -o <its input>`` is refused, an existing model or a hand-edited config is replaced
only with ``--force`` (a ``.bak`` copy kept), and two artefacts of one stem keep their own
configs. Real files through the real ``tx2-convert`` entry point and config writer.
"""

import os
import shutil

import pytest
import yaml

from tx2_inference.convert import config as cfgmod
from tx2_inference.convert.cli import main
from tx2_inference.core.model_config import config_path_for, ModelConfig
from tx2_inference.errors import UserError

PERSONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'persons')


def _copy_model(default_model, folder, name='det'):
    onnx = str(folder / (name + '.onnx'))
    shutil.copy(default_model, onnx)
    shutil.copy(os.path.splitext(default_model)[0] + '.yaml', str(folder / (name + '.yaml')))
    return onnx


def _digest(path):
    with open(path, 'rb') as f:
        return f.read()


def test_quantize_onto_its_own_input_or_an_existing_model_is_refused(default_model, tmp_path,
                                                                     capsys):
    onnx = _copy_model(default_model, tmp_path)
    original = _digest(onnx)
    link = str(tmp_path / 'link.onnx')
    os.symlink(onnx, link)
    for target in (onnx, link):
        for force in ([], ['--force']):  # --force does not make the input writable
            assert main(['quantize', onnx, '-o', target, '--calib-images', PERSONS] +
                        force) == 2
            err = capsys.readouterr().err
            assert 'is the model this command reads' in err, err
    other = str(tmp_path / 'other.onnx')
    with open(other, 'wb') as f:
        f.write(b'a model the user keeps')
    assert main(['quantize', onnx, '-o', other, '--calib-images', PERSONS]) == 2
    assert 'other.onnx exists: pass --force' in capsys.readouterr().err
    assert _digest(onnx) == original and _digest(other) == b'a model the user keeps'


def test_a_hand_completed_config_is_kept_unless_forced_and_then_backed_up(default_model,
                                                                           tmp_path):
    """What `tx2-convert onnx` does with the config of a model it writes again."""
    onnx = _copy_model(default_model, tmp_path)
    os.unlink(str(tmp_path / 'det.yaml'))
    cfg = cfgmod.load(os.path.splitext(default_model)[0] + '.yaml')
    written = cfgmod.save(None, cfg, header='Written by a test.', model=onnx)
    assert written == str(tmp_path / 'det.yaml')
    assert cfgmod.save(None, cfg, model=onnx) == written  # ours, unchanged: rewritten
    with open(written) as f:
        text = f.read()
    edited = text.replace('score_activation: none', 'score_activation: sigmoid')
    assert edited != text
    with open(written, 'w') as f:
        f.write(edited)
    with pytest.raises(UserError) as error:
        cfgmod.save(None, cfg, model=onnx)
    assert 'edited by hand' in str(error.value) and '--force' in str(error.value)
    with open(written) as f:
        assert f.read() == edited
    cfgmod.save(None, cfg, model=onnx, force=True)
    with open(written + '.bak') as f:
        assert f.read() == edited


def test_two_artefacts_of_one_stem_keep_their_own_configs(default_model, tmp_path):
    onnx = _copy_model(default_model, tmp_path)
    os.unlink(str(tmp_path / 'det.yaml'))
    cfg = cfgmod.load(os.path.splitext(default_model)[0] + '.yaml')
    onnx_cfg = cfgmod.save(None, cfg, model=onnx)
    tflite = str(tmp_path / 'det.tflite')
    with open(tflite, 'wb') as f:
        f.write(b'TFL3')
    other = dict(cfg, labels=['pedestrian'])
    tflite_cfg = cfgmod.save(None, other, model=tflite)
    assert tflite_cfg == tflite + '.yaml' and onnx_cfg == str(tmp_path / 'det.yaml')
    # Each model finds its own (the node and the detector look up config_path_for).
    assert config_path_for(onnx) == onnx_cfg and config_path_for(tflite) == tflite_cfg
    assert ModelConfig.load(config_path_for(onnx)).labels == cfg['labels']
    assert ModelConfig.load(config_path_for(tflite)).labels == ['pedestrian']
    with open(onnx_cfg) as f:
        assert yaml.safe_load(f)['labels'] == cfg['labels']


def test_a_hand_edited_config_stops_the_command_before_any_model_is_written(default_model,
                                                                            tmp_path, capsys):
    onnx = _copy_model(default_model, tmp_path)
    out = str(tmp_path / 'det_int8.onnx')
    (tmp_path / 'det_int8.yaml').write_text('# completed by hand\n')
    assert main(['quantize', onnx, '-o', out, '--calib-images', PERSONS]) == 2
    assert 'det_int8.yaml was edited by hand' in capsys.readouterr().err
    assert not os.path.exists(out)
