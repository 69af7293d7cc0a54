"""``ros2 param get`` shows the detection parameters in force, and ``describe`` where from.

A node process on the default model with two copies of its config: one whose ``detection``
section says score_threshold 0.35, one saying 0.25 and nothing else. Unset, a parameter shows
the model config's value after configure; set, the user's value stays through a change of model.
The answers come through the node's real parameter services, as the ``ros2 param`` CLI asks.
"""

import os
import shutil

from rcl_interfaces.srv import DescribeParameters
import yaml

from tx2_inference.tools import soak


def config_copy(default_model: str, folder: str, name: str, detection: dict) -> str:
    """Write the default model's config with this ``detection`` section; return its path."""
    with open(os.path.splitext(default_model)[0] + '.yaml') as f:
        config = yaml.safe_load(f)
    config['detection'] = detection
    path = os.path.join(folder, name + '.yaml')
    with open(path, 'w') as f:
        yaml.safe_dump(config, f)
    return path


def describe(client, *names):
    """Return the parameters' descriptions (``ros2 param describe``)."""
    service = client.node.create_client(DescribeParameters,
                                        client.target + '/describe_parameters')
    assert service.wait_for_service(timeout_sec=10.0)
    answer = client.call(service, DescribeParameters.Request(names=list(names)))
    return [d.description for d in answer.descriptors]


def test_param_get_shows_the_model_default_in_force_and_a_set_value_wins(tmp_path,
                                                                         default_model):
    folder = str(tmp_path)
    model = os.path.join(folder, 'person.onnx')
    shutil.copy(default_model, model)
    first = config_copy(default_model, folder, 'first', {'score_threshold': 0.35})
    second = config_copy(default_model, folder, 'second', {'score_threshold': 0.25})
    names = ('score_threshold', 'nms_iou_threshold', 'max_detections', 'class_agnostic_nms')
    node, driver = soak.start_node('effective_params_node', model, folder,
                                   extra={'model_config': first,
                                          # the test changes model_config while unconfigured
                                          'allow_remote_reconfigure': True})
    client = driver.client
    try:
        assert client.get_parameters(*names) == [None] * 4, 'no model yet: nothing in force'
        assert client.transition('configure'), node.log()[-2000:]
        # The YAML's threshold, and the built-in defaults for what the YAML does not say.
        assert client.get_parameters(*names) == [0.35, 0.45, 100, False]
        score, iou = describe(client, 'score_threshold', 'nms_iou_threshold')
        assert 'In force now: from the model config {}: detection.score_threshold'.format(
            first) in score, score
        assert 'built-in default' in iou and 'detection.iou_threshold' in iou, iou
        assert 'score_threshold 0.35 (from the model config' in node.log()
        # /diagnostics says it too.
        status = client.wait_until(lambda: [
            s for m in client.messages('/diagnostics') for s in m.status
            if s.name.endswith(': detector') and s.message == 'inactive'])
        values = {v.key: v.value for v in status[-1].values}
        assert values['param.score_threshold'].startswith('0.35 (from the model config')

        # Another model config: the model default follows it (nobody set the parameter).
        assert client.transition('cleanup')
        assert client.set_parameters(model_config=second)[0].successful
        assert client.transition('configure'), node.log()[-2000:]
        assert client.get_parameters('score_threshold') == [0.25]

        # Set by the user: stays, through a reconfigure with the first config again.
        assert client.set_parameters(score_threshold=0.6)[0].successful
        client.wait_until(lambda: 'as set' in describe(client, 'score_threshold')[0],
                          timeout=5.0)
        assert client.transition('cleanup')
        assert client.set_parameters(model_config=first)[0].successful
        assert client.transition('configure'), node.log()[-2000:]
        assert client.get_parameters('score_threshold', 'max_detections') == [0.6, 100]
        assert 'overrides the model config' in describe(client, 'score_threshold')[0]
        assert node.alive() and 'Traceback' not in node.log()
    finally:
        driver.close()
        node.stop()
