"""What each Jetson can run: compute capability, fast FP16/INT8, DLA, JetPack -> TensorRT.

The one place these facts live; the engine build (``precision: auto``, INT8 refused where the
GPU has none, Q/DQ models) and the preflight (``tx2-convert check --target``) read them. Each
fact names its source:

- compute capability: NVIDIA, "CUDA GPU Compute Capability" (developer.nvidia.com/cuda-gpus:
  8.7 Jetson AGX Orin, Orin NX, Orin Nano) and "Legacy CUDA GPU Compute Capability"
  (developer.nvidia.com/cuda-legacy-gpus: 7.2 Jetson AGX Xavier, Xavier NX; 6.2 Jetson TX2;
  5.3 Jetson Nano).
- fast FP16 / INT8 / DLA: TensorRT support matrix, "Hardware and Precision" (8.x; e.g.
  docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-825/support-matrix): 7.2 Jetson AGX
  Xavier and 8.7 Orin have FP16 and INT8 tensor cores and DLA. No INT8 on the TX2 (sm_62) or
  Nano (sm_53): ``platformHasFastInt8`` is false on a TX2 with TensorRT 8.0.1.6
  (wang-xinyu/tensorrtx#831), "TX2 doesn't support INT8" (dusty-nv/jetson-inference#111),
  "Jetson Nano and Jetson TX2 are both Pascal ... do not have hardware support for computing
  Int8. FP16 is the fastest" (l-sf/Track-trt#5; the Nano is Maxwell, NVIDIA-AI-IOT/torch2trt#255);
  both have fast FP16 ("Jetson TX1 and Jetson TX2 support FP16", dusty-nv/jetson-inference#54).
- JetPack -> TensorRT: JetPack 4.6 (L4T 32.6.1) TensorRT 8.0.1; 4.6.1 / 4.6.2+ (L4T 32.7.x)
  TensorRT 8.2.1 (developer.nvidia.com/jetpack-sdk-461: "JetPack 4.6.1 includes TensorRT 8.2"),
  the last JetPack for TX2 and Nano; JetPack 5.1 TensorRT 8.5.2 (developer.nvidia.com/embedded/
  jetpack-sdk-51, Xavier and Orin; the 5.x line is the last for Xavier); JetPack 6.1 TensorRT
  10.3 (Orin; pytorch.org/TensorRT getting_started/jetpack: "JetPack 6.1 ... CUDA 12.6,
  TensorRT 10.3"). JetPack 6.0 -> TensorRT 8.6.2 is NVIDIA's JetPack 6.0 release, not read
  from a page here.

No TensorRT here: pure data and lookups (Python 3.6).
"""

from typing import List, Optional, Tuple

from tx2_inference.errors import ConfigError


class Device(object):
    """One Jetson family and what its GPU can do."""

    def __init__(self, key: str, name: str, compute_capability: str, fast_fp16: bool,
                 fast_int8: bool, dla_cores: str, jetpacks: Tuple[Tuple[str, str], ...],
                 checked_releases: Tuple[str, ...]) -> None:
        """Hold the facts (see the module docstring for their sources).

        :param dla_cores: as a text, since it differs within a family (e.g. ``'0-2'``).
        :param jetpacks: (JetPack, TensorRT) pairs, oldest first.
        :param checked_releases: the TensorRT releases ``--target KEY`` checks against
            (keys of the preflight's support data).
        """
        self.key = key
        self.name = name
        self.compute_capability = compute_capability
        self.fast_fp16 = fast_fp16
        self.fast_int8 = fast_int8
        self.dla_cores = dla_cores
        self.jetpacks = jetpacks
        self.checked_releases = checked_releases

    def best_precision(self, int8_ready: bool = False) -> str:
        """Return the fastest precision this GPU runs: int8 only with scales at hand."""
        if self.fast_int8 and int8_ready:
            return 'int8'
        return 'fp16' if self.fast_fp16 else 'fp32'


DEVICES = (
    Device('tx2', 'Jetson TX2 (Tegra X2, Pascal)', '6.2', True, False, '0',
           (('4.6', '8.0.1'), ('4.6.1', '8.2.1')), ('8.0', '8.2')),
    Device('nano', 'Jetson Nano (Tegra X1, Maxwell)', '5.3', True, False, '0',
           (('4.6', '8.0.1'), ('4.6.1', '8.2.1')), ('8.0', '8.2')),
    Device('xavier', 'Jetson AGX Xavier / Xavier NX (Volta)', '7.2', True, True, '2',
           (('4.6', '8.0.1'), ('4.6.1', '8.2.1'), ('5.1', '8.5.2')), ('8.5',)),
    Device('orin', 'Jetson AGX Orin / Orin NX / Orin Nano (Ampere)', '8.7', True, True,
           '0-2 (Orin Nano: none)', (('5.1', '8.5.2'), ('6.0', '8.6.2'), ('6.1', '10.3')),
           ('10',)),
)  # type: Tuple[Device, ...]

#: Other GPUs, by compute capability: (fast FP16, fast INT8), the FP16 and INT8 columns of the
#: TensorRT 8.x support matrix, "Hardware and Precision" (6.1, e.g. Tesla P4: no FP16, INT8; 6.0,
#: P100: FP16, no INT8; 7.0 V100, 7.5 T4, 8.0 A100, 8.6 A10: both). Maxwell (5.0, 5.2) has
#: neither (INT8 needs DP4A, from sm_61: AlexeyAB/yolo2_light#26); Ada (8.9) and Hopper (9.0)
#: have both (their rows are in the later matrices, not read from a page here).
#: A capability in neither table: TensorRT's own ``platform_has_fast_*`` decide, at the build.
CAPABILITIES = {'5.0': (False, False), '5.2': (False, False), '6.0': (True, False),
                '6.1': (False, True), '7.0': (True, True), '7.5': (True, True),
                '8.0': (True, True), '8.6': (True, True), '8.9': (True, True),
                '9.0': (True, True)}  # type: Dict[str, Tuple[bool, bool]]

BY_KEY = {d.key: d for d in DEVICES}  # type: Dict[str, Device]
BY_CAPABILITY = {d.compute_capability: d for d in DEVICES}  # type: Dict[str, Device]

#: ``--target`` names of TensorRT releases alone -> the support data's release key.
TRT_TARGETS = {'trt8.0': '8.0', 'trt8.2': '8.2', 'trt8.5': '8.5', 'trt8.6': '8.6',
               'trt10': '10'}
TARGETS = tuple(d.key for d in DEVICES) + tuple(TRT_TARGETS)


def device_for(compute_capability: str) -> Optional[Device]:
    """Return the Jetson with this compute capability (``'6.2'``), or None (a desktop GPU)."""
    return BY_CAPABILITY.get(str(compute_capability).strip())


def release_for(trt_version: str) -> str:
    """Return the support data's release key for a TensorRT version (``'8.2.1.8'`` -> 8.2).

    A version between two described releases takes the older one (8.4 -> 8.2: its parser is
    at least as capable); 9.x -> 8.6; 11+ -> 10 (the newest described).
    """
    try:
        major, minor = (int(p) for p in str(trt_version).split('.')[:2])
    except ValueError:
        raise ConfigError('TensorRT version {!r} is not major.minor[...].'.format(
            trt_version)) from None
    if major >= 10:
        return '10'
    if major == 9:
        return '8.6'
    if major == 8:
        return '8.6' if minor >= 6 else '8.5' if minor >= 5 else '8.2' if minor >= 2 else '8.0'
    raise ConfigError('TensorRT {} is older than 8.0, which this package needs (JetPack 4.6 or '
                      'later).'.format(trt_version))


def target_releases(target: str) -> Tuple[List[str], Optional[Device]]:
    """Return the releases ``--target`` checks and its device (None for a bare release).

    :raises ConfigError: an unknown target.
    """
    if target in BY_KEY:
        device = BY_KEY[target]
        return list(device.checked_releases), device
    if target in TRT_TARGETS:
        return [TRT_TARGETS[target]], None
    raise ConfigError('unknown target {!r}: choose one of {}.'.format(target, ', '.join(TARGETS)))


def gpu_label(gpu_name: str, compute_capability: str) -> str:
    """Return how messages name a GPU: the Jetson family, else its own name and sm_XY."""
    device = device_for(compute_capability)
    sm = 'sm_' + str(compute_capability).replace('.', '')
    return '{} ({})'.format(device.name if device else gpu_name, sm)


def resolve_precision(precision: str, gpu_name: str, compute_capability: str,
                      int8_ready: bool, fast_int8: Optional[bool] = None,
                      fast_fp16: Optional[bool] = None) -> str:
    """Return the precision to build with on this GPU; refuse INT8 where it has none.

    :param precision: ``auto``, ``fp32``, ``fp16`` or ``int8``.
    :param int8_ready: INT8 scales are at hand (a Q/DQ model, calibration images or cache).
    :param fast_int8: / ``fast_fp16``: what TensorRT reports (``platform_has_fast_*``), used
        for a GPU neither table holds; None: unknown (then INT8 is not refused).
    :raises ConfigError: INT8 asked of a GPU without it, one line naming the alternative.
    """
    device = device_for(compute_capability)
    known = CAPABILITIES.get(str(compute_capability).strip())
    has_int8 = device.fast_int8 if device else known[1] if known else fast_int8
    has_fp16 = device.fast_fp16 if device else known[0] if known else fast_fp16
    if precision == 'auto':
        if has_int8 and int8_ready:
            return 'int8'
        return 'fp32' if has_fp16 is False else 'fp16'
    if precision == 'int8' and has_int8 is False:
        raise ConfigError(
            'precision int8: the {} has no fast INT8, so an INT8 engine would be slower than '
            'FP16 there (and TensorRT refuses Q/DQ models on it): use precision fp16 (or '
            'auto).'.format(gpu_label(gpu_name, compute_capability)))
    return precision


def table() -> List[str]:
    """Return the table as lines (for docs and ``tx2-convert check --list-targets``)."""
    lines = ['{:<7} {:<48} {:<4} {:<5} {:<5} {:<22} {}'.format(
        'target', 'device', 'sm', 'FP16', 'INT8', 'DLA cores', 'JetPack -> TensorRT')]
    for d in DEVICES:
        lines.append('{:<7} {:<48} {:<4} {:<5} {:<5} {:<22} {}'.format(
            d.key, d.name, d.compute_capability.replace('.', ''),
            'yes' if d.fast_fp16 else 'no', 'yes' if d.fast_int8 else 'no', d.dla_cores,
            ', '.join('{} -> {}'.format(j, t) for j, t in d.jetpacks)))
    return lines
