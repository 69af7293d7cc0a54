"""The soak's summary figures and plot."""

from typing import Any, Dict

from tx2_inference.core.stats import percentile
from tx2_inference.tools.requires import MissingToolLibraryError, pyplot
from tx2_inference.tools.soak.phases import rss_growth


def summary(results: Dict[str, Any]) -> Dict[str, Any]:
    """Return the headline figures of a soak run (what the README quotes)."""
    out = {}  # type: Dict[str, Any]
    churn_result = results.get('churn')
    if churn_result:
        first, last = churn_result['samples'][0], churn_result['samples'][-1]
        out['churn'] = {
            'cycles': churn_result['cycles'], 'failures': len(churn_result['failures']),
            'threads_before_after': (first['threads'], last['threads']),
            'fds_before_after': (first['fds'], last['fds']),
            'rss_before_after_mb': (round(first['rss_mb'], 1), round(last['rss_mb'], 1)),
            'rss_growth_mb': round(rss_growth(churn_result['samples']), 1)}
    flood_result = results.get('flood')
    if flood_result:
        memory = [mb for _, mb in flood_result['memory_mb']]
        quarter = memory[len(memory) // 4] if memory else float('nan')
        out['flood'] = {
            'frames_sent': flood_result['frames_sent'],
            'input_fps': round(flood_result['input_fps'], 1),
            'output_fps': round(flood_result['output_fps'], 1),
            'answered': flood_result['answered'], 'node_dropped': flood_result['node_dropped'],
            'node_frames_in': flood_result['node_frames_in'],
            'unaccounted': flood_result['unaccounted'],
            'latency_p50_ms': round(percentile(flood_result['latency_ms'], 50), 1),
            'latency_p99_ms': round(percentile(flood_result['latency_ms'], 99), 1),
            'latency_max_ms': round(max(flood_result['latency_ms'] or [float('nan')]), 1),
            'rss_growth_after_first_quarter_mb': round(memory[-1] - quarter, 1),
            'frame_size': flood_result['frame_size'],
            'loadavg_1min_max': max([v for _, v in flood_result['loadavg_1min']] or [0.0])}
    for key in ('fuzz_raw', 'fuzz_compressed'):
        if results.get(key):
            r = results[key]
            out[key] = {'faults_sent': r['faults_sent'], 'valid_sent': r['valid_sent'],
                        'valid_with_person': r['valid_with_person'],
                        'rejected_by_node': r['node_rejected'],
                        'accepted_damaged': r['accepted_damaged'],
                        'rejections_as_expected': r['node_rejected'] == {
                            'bad_frame_' + k: v for k, v in r['expected_drops'].items()},
                        'node_alive': r['alive'], 'traceback_in_log': r['traceback_in_log']}
    if results.get('signals'):
        out['signals'] = [{k: s[k] for k in ('signal', 'exit_code', 'seconds',
                                              'released_logged')}
                          for s in results['signals']]
    return out


def plot(results: Dict[str, Any], path: str) -> bool:
    """Plot the node's RSS and latency over frames and cycles; False without matplotlib."""
    try:
        plt = pyplot("the soak's plot")
    except MissingToolLibraryError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    flood_result = results.get('flood') or {}
    memory = flood_result.get('memory_mb') or []
    axes[0].plot([f for f, _ in memory], [mb for _, mb in memory])
    axes[0].set(title='flood: node RSS', xlabel='frames sent', ylabel='MB')
    latency = flood_result.get('latency_ms') or []
    axes[1].plot(range(len(latency)), latency, '.', markersize=2, alpha=0.5)
    axes[1].set(title='flood: latency, image stamp to detections here',
                xlabel='answered frame', ylabel='ms')
    samples = (results.get('churn') or {}).get('samples') or []
    axes[2].plot([s['cycle'] for s in samples], [s['rss_mb'] for s in samples], label='RSS MB')
    axes[2].plot([s['cycle'] for s in samples], [s['threads'] for s in samples],
                 label='threads')
    axes[2].plot([s['cycle'] for s in samples], [s['fds'] for s in samples], label='fds')
    axes[2].set(title='churn: node process per cycle', xlabel='cycle')
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
