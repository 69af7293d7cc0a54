"""The Jetson's state and verdict (core/jetson.py), on tegrastats lines recorded on real boards.

Each line below is copied from a public repository, as recorded there (cited per line); none is
written here. What sysfs says on a Jetson (power mode, the GPU's highest clock, trip points)
cannot be recorded from these sources, so the sysfs tests build a stand-in tree in the layout
L4T uses (named in each), with the one maximum that is cited: the TX2 GPU's 1300.5 MHz.
"""

import os
import sys
import time

from tx2_inference.core import jetson

# Jetson TX2 (L4T 28, 8 GB, six cores), under a TensorFlow training load with the GPU clock at
# 140 MHz: MIDS-scaling-up/v2, week05/hw/README.md, commit
# 9462e252c5930d788b14a0f322d92f19fe577f2f (lines 45-46; removed in f142c0d).
TX2_LOADED_LOW_CLOCK = (
    'RAM 2586/7846MB (lfb 1x1MB) CPU [49%@806,10%@345,0%@345,46%@806,34%@959,26%@960] '
    'EMC_FREQ 10%@665 GR3D_FREQ 46%@140 APE 150 MTS fg 0% bg 0% BCPU@41C MCPU@41C GPU@39C '
    'PLL@41C Tboard@35C Tdiode@37.75C PMIC@100C thermal@40.2C VDD_IN 3177/3177 VDD_CPU 536/536 '
    'VDD_GPU 383/383 VDD_SOC 536/536 VDD_WIFI 0/0 VDD_DDR 575/575')
# Jetson TX2 (L4T 32), idle: MIDS-scaling-up/v2, week03/labs/README.md, commit
# 84386cd2c2577901a402798bc10e644c74590156 (line 8).
TX2_IDLE = (
    'RAM 1004/7852MB (lfb 7x2MB) CPU [0%@350,4%@345,2%@499,1%@341,1%@349,0%@345] EMC_FREQ '
    '17%@40 GR3D_FREQ 0%@114 APE 150 MTS fg 0% bg 0% PLL@34C MCPU@34C PMIC@100C Tboard@28C '
    'GPU@32C BCPU@34C thermal@33.2C Tdiode@30.5C VDD_SYS_GPU 153/153 VDD_SYS_SOC 383/383 '
    'VDD_4V0_WIFI 0/0 VDD_IN 1876/1876 VDD_SYS_CPU 229/229 VDD_SYS_DDR 134/134')
# Jetson AGX Orin Developer Kit, JetPack 7.2 (L4T R39.2), one clock per GPC:
# rbonghi/jetson_stats, jtop/tests/test_06_tegra_parse.py, commit
# 2386a023d2d159808f579b2462ae27ad85a0db0f ("Real tegrastats line from a Jetson AGX Orin").
ORIN_JP7 = (
    '07-25-2026 09:08:28 RAM 20642/62817MB (lfb 1x2MB) '
    'CPU [23%@2201,10%@2201,4%@2201,14%@2201,30%@2201,18%@2201,10%@2201,10%@2201,33%@2201,'
    '7%@2201,5%@2201,27%@2201] '
    'EMC_FREQ 3%@3199 GR3D_FREQ 12%@[1300,1300] NVENC0 off NVDEC0 off NVJPG0 off NVJPG1 off '
    'VIC off OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 '
    'cpu@52.968C/52.968C soc2@48.406C/48.406C soc0@49.531C/49.531C gpu@47.625C/47.625C '
    'VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 3268mW/3268mW/3268mW '
    'VIN_SYS_5V0 5500mW/5500mW/5500mW')
# The TX2 GPU's highest clock: a TX2's Caffe device query, "Clock rate: 1300500" (kHz),
# kozyilmaz/nvidia-jetson-rt, docs/README.05.results.md, commit
# 134fbc8d9aa13e86c5fa264af028dbf59fec48f5 (deviceQuery there: "GPU Max Clock rate: 1301 MHz").
TX2_GPU_MAX_MHZ = 1300.5


def test_tx2_lines_parse_to_what_they_say():
    loaded = jetson.parse_tegrastats(TX2_LOADED_LOW_CLOCK)
    assert (loaded['ram_used_mb'], loaded['ram_total_mb']) == (2586, 7846)
    assert (loaded['gpu_load'], loaded['gpu_mhz']) == (46, 140)
    assert (loaded['emc_load'], loaded['emc_mhz']) == (10, 665)
    assert 'swap_used_mb' not in loaded  # this release prints no SWAP field
    assert loaded['temps'] == {'BCPU': 41, 'MCPU': 41, 'GPU': 39, 'PLL': 41, 'Tboard': 35,
                               'Tdiode': 37.75, 'thermal': 40.2}  # PMIC's fixed 100 C left out
    idle = jetson.parse_tegrastats(TX2_IDLE)
    assert (idle['gpu_load'], idle['gpu_mhz'], idle['emc_mhz']) == (0, 114, 40)


def test_orin_jetpack7_line_parses_its_per_gpc_clocks():
    orin = jetson.parse_tegrastats(ORIN_JP7)
    assert (orin['ram_used_mb'], orin['ram_total_mb']) == (20642, 62817)
    assert (orin['gpu_load'], orin['gpu_mhz']) == (12, 1300)
    assert (orin['emc_load'], orin['emc_mhz']) == (3, 3199)
    assert orin['temps'] == {'cpu': 52.968, 'soc2': 48.406, 'soc0': 49.531, 'gpu': 47.625}


def tx2(line, mode=(0, 'MAXN'), **more):
    """Return a TX2's state: the recorded line, with what sysfs adds (GPU maximum, mode)."""
    state = dict(jetson.parse_tegrastats(line), jetson=True, model='NVIDIA Jetson TX2',
                 gpu_max_mhz=TX2_GPU_MAX_MHZ, power_mode=mode, trips={})
    state.update(more)
    return state


def test_a_loaded_gpu_at_a_low_clock_warns_with_the_fix():
    level, message, values = jetson.assess(tx2(TX2_LOADED_LOW_CLOCK))
    assert level == 'warn'
    assert message.startswith('GPU clock 140 of 1300 MHz at 46 % load. Fix: sudo jetson_clocks')
    assert 'nvpmodel' not in message  # already MAXN
    values = dict(values)
    assert values['gpu_mhz'] == '140' and values['gpu_max_mhz'] == '1300'
    assert values['power_mode'] == 'MAXN (0)' and values['throttling'] == 'no'
    assert values['temp.GPU'] == '39.0' and values['ram_used_mb'] == '2586'


def test_a_lower_power_mode_adds_the_nvpmodel_fix():
    _, message, _ = jetson.assess(tx2(TX2_LOADED_LOW_CLOCK, mode=(1, 'MAXQ')))
    assert '(power mode MAXQ caps it)' in message
    assert message.endswith('Fix: sudo jetson_clocks; sudo nvpmodel -m 0')


def test_an_idle_tx2_and_a_busy_orin_at_full_clock_are_ok():
    level, message, _ = jetson.assess(tx2(TX2_IDLE))
    assert level == 'ok' and 'clocks and temperatures fine' in message
    orin = dict(jetson.parse_tegrastats(ORIN_JP7), jetson=True, model='Jetson AGX Orin',
                gpu_max_mhz=1300.5, power_mode=(0, 'MAXN'), trips={})
    assert jetson.assess(dict(orin, gpu_load=99.0))[0] == 'ok'  # 1300 of 1300.5 MHz
    assert jetson.assess(dict(orin, gpu_load=99.0, gpu_mhz=612.0))[0] == 'warn'


def test_a_zone_past_its_passive_trip_is_throttling():
    """The TX2 line's temperatures against trip points a stand-in sets below two of them."""
    level, message, values = jetson.assess(tx2(TX2_IDLE, trips={'GPU': 30.0, 'BCPU': 33.0}))
    assert level == 'warn'
    assert 'the board throttles: BCPU 34.0 C (passive trip 33 C), GPU 32.0 C' in message
    assert 'sudo jetson_clocks (it also runs the fan at full speed)' in message
    assert dict(values)['throttling'].startswith('yes: BCPU')


def test_this_machine_is_not_a_jetson():
    """The real /etc, /proc and /sys of the machine the tests run on (a PC or CI runner)."""
    state = jetson.read_sysfs('/')
    if state['jetson']:  # pragma: no cover - run on a Jetson: the other tests cover it
        return
    level, message, values = jetson.assess(state)
    assert level == 'ok' and message.startswith('not a Jetson')
    assert float(dict(values)['ram_total_mb']) > 0
    assert jetson.resident_mb() > 10


def _write(root, path, text):
    full = os.path.join(str(root), path.lstrip('/'))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'w') as f:
        f.write(text)


def test_sysfs_of_a_tx2_in_maxq_with_a_hot_gpu(tmp_path):
    """A stand-in of L4T 32's files (paths as on a TX2), merged with the recorded line."""
    _write(tmp_path, '/etc/nv_tegra_release', '# R32 (release), REVISION: 7.1\n')
    _write(tmp_path, '/proc/device-tree/model', 'quill\x00')
    _write(tmp_path, '/var/lib/nvpmodel/status', 'pmode:0001\n')
    _write(tmp_path, '/etc/nvpmodel.conf', '< POWER_MODEL ID=0 NAME=MAXN >\n'
                                           '< POWER_MODEL ID=1 NAME=MAXQ >\n')
    devfreq = '/sys/class/devfreq/17000000.gp10b/'
    _write(tmp_path, devfreq + 'cur_freq', '140250000\n')
    _write(tmp_path, devfreq + 'max_freq', '854250000\n')  # capped by the mode
    _write(tmp_path, devfreq + 'available_frequencies', '114750000 140250000 1300500000\n')
    _write(tmp_path, '/sys/devices/gpu.0/load', '530\n')
    zone = '/sys/class/thermal/thermal_zone1/'
    _write(tmp_path, zone + 'type', 'GPU-therm\n')
    _write(tmp_path, zone + 'temp', '91500\n')
    _write(tmp_path, zone + 'trip_point_0_type', 'critical\n')
    _write(tmp_path, zone + 'trip_point_0_temp', '101000\n')
    _write(tmp_path, zone + 'trip_point_1_type', 'passive\n')
    _write(tmp_path, zone + 'trip_point_1_temp', '90000\n')
    _write(tmp_path, '/proc/meminfo', 'MemTotal:        8038928 kB\nMemFree:          100 kB\n'
                                      'MemAvailable:    5390516 kB\nSwapTotal:       4019464 kB\n'
                                      'SwapFree:        4019464 kB\n')
    state = jetson.board_state(str(tmp_path), TX2_LOADED_LOW_CLOCK)
    assert state['jetson'] and state['power_mode'] == (1, 'MAXQ')
    assert (state['gpu_mhz'], state['gpu_max_mhz'], state['gpu_load']) == (140.25, 1300.5, 53)
    assert state['emc_mhz'] == 665  # from the tegrastats line: sysfs has no EMC without root
    level, message, values = jetson.assess(state)
    assert level == 'warn'
    assert 'GPU clock 140 of 1300 MHz at 53 % load (power mode MAXQ caps it)' in message
    assert 'GPU-therm 91.5 C (passive trip 90 C)' in message
    assert 'sudo nvpmodel -m 0' in message and 'sudo jetson_clocks' in message
    assert dict(values)['ram_total_mb'] == '7851'


def test_tegrastats_reader_keeps_the_latest_line_of_a_real_child():
    """A child replays the recorded TX2 lines as tegrastats prints them, once a second."""
    script = ('import sys, time\n'
              'for line in sys.argv[1:]:\n'
              '    print(line, flush=True)\n'
              '    time.sleep(0.2)\n'
              'time.sleep(30)\n')
    reader = jetson.TegrastatsReader(command=[sys.executable, '-c', script, TX2_IDLE,
                                              TX2_LOADED_LOW_CLOCK])
    try:
        assert reader.latest() in ('', TX2_IDLE)
        deadline = time.monotonic() + 10.0
        while reader.latest() != TX2_LOADED_LOW_CLOCK and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.latest() == TX2_LOADED_LOW_CLOCK
    finally:
        reader.close()
    assert jetson.TegrastatsReader(command=['no-tegrastats-here']).latest() == ''
