"""
The Jetson's own state: power mode, clocks against their maxima, loads, temperatures, memory.

"Why is it slow" on a Jetson usually ends with ``sudo jetson_clocks`` or ``sudo nvpmodel -m 0``:
the GPU or memory clock idles low while the node works, a lower power mode caps them, or the
board throttles when hot. `board_state` reads what a user could read without root, and
`assess` turns it into a verdict with the one-line fix:

- ``tegrastats`` lines (`parse_tegrastats`): RAM and swap (shared with the GPU on a Jetson),
  the memory controller's (EMC) and the GPU's (GR3D) load and clock, the temperatures. The
  formats of L4T 28 to 39 (TX2 to Orin): ``GR3D_FREQ 53%@140``, ``GR3D_FREQ 0%`` (no clock
  without root on some releases), ``GR3D_FREQ 12%@[1300,1300]`` (one clock per GPC);
- sysfs and /etc (`read_sysfs`): whether this is a Jetson (``/etc/nv_tegra_release``, the
  device tree's model), the GPU's devfreq clock, its highest available frequency and its load,
  the power mode (``/var/lib/nvpmodel/status`` ``pmode:0000`` named by ``/etc/nvpmodel.conf``'s
  ``< POWER_MODEL ID=0 NAME=MAXN >``), the thermal zones and their passive trip points (past
  one, the kernel throttles), ``/proc/meminfo``.

Pure Python 3.6 and the standard library: no root service (jtop's needs one), no ROS.
"""

import os
import re
import shutil
import subprocess
import threading
from typing import Any, Dict, List, Optional, Tuple

# Under this load a clock below its maximum is the governor's choice, not a problem.
GPU_LOAD_BUSY = 30.0
EMC_LOAD_BUSY = 50.0
AT_MAX = 0.95  # a clock within 5 % of its maximum counts as at maximum
RAM_NEARLY_FULL = 0.9
FIX_CLOCKS = 'sudo jetson_clocks'
FIX_MODE = 'sudo nvpmodel -m 0'
# Sensors that report no temperature: the TX2's PMIC reads a fixed 100 C, and an Orin's
# powered-down CV/GPU zones read -256 C.
FAKE_SENSORS = ('PMIC',)
NO_READING_C = -40.0

_RAM = re.compile(r'\bRAM (\d+)/(\d+)MB')
_SWAP = re.compile(r'\bSWAP (\d+)/(\d+)MB')
_ENGINE = r'\b{}(?:_FREQ)? (\d+)%(?:@\[?([\d,]+)\]?)?'
_GPU = re.compile(_ENGINE.format('GR3D'))
_EMC = re.compile(_ENGINE.format('EMC'))
_TEMP = re.compile(r'(?:^|\s)([A-Za-z][\w-]*)@(-?\d+(?:\.\d+)?)C\b')


def _engine(pattern: Any, line: str) -> Tuple[Optional[float], Optional[float]]:
    """Return an engine's (load %, clock MHz) from a tegrastats line; None where absent."""
    match = pattern.search(line)
    if match is None:
        return None, None
    clocks = [float(c) for c in (match.group(2) or '').split(',') if c]
    return float(match.group(1)), (max(clocks) if clocks else None)


def parse_tegrastats(line: str) -> Dict[str, Any]:
    """Return what one ``tegrastats`` line says; keys are left out where the line lacks them.

    Keys: ram_used_mb, ram_total_mb, swap_used_mb, swap_total_mb, gpu_load, gpu_mhz, emc_load,
    emc_mhz (loads in %), temps ({sensor: C}, sensors without a reading left out).
    """
    state = {}  # type: Dict[str, Any]
    for pattern, keys in ((_RAM, ('ram_used_mb', 'ram_total_mb')),
                          (_SWAP, ('swap_used_mb', 'swap_total_mb'))):
        match = pattern.search(line)
        if match:
            state[keys[0]], state[keys[1]] = float(match.group(1)), float(match.group(2))
    for name, pattern in (('gpu', _GPU), ('emc', _EMC)):
        load, mhz = _engine(pattern, line)
        if load is not None:
            state[name + '_load'] = load
        if mhz is not None:
            state[name + '_mhz'] = mhz
    temps = {sensor: float(value) for sensor, value in _TEMP.findall(line)
             if sensor not in FAKE_SENSORS and float(value) > NO_READING_C}
    if temps:
        state['temps'] = temps
    return state


def _read(root: str, path: str) -> Optional[str]:
    """Return a file's stripped text under root, or None if it cannot be read."""
    try:
        with open(os.path.join(root, path.lstrip('/')), 'rb') as f:
            return f.read().decode('utf-8', 'replace').strip('\x00 \n\t')
    except (OSError, IOError):
        return None


def _number(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def power_mode(root: str = '/') -> Optional[Tuple[int, str]]:
    """Return the nvpmodel power mode (id, name), or None where nvpmodel is not set up."""
    status = _read(root, '/var/lib/nvpmodel/status')
    match = re.search(r'pmode:(\d+)', status or '')
    if match is None:
        return None
    mode = int(match.group(1))
    names = re.findall(r'<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)',
                       _read(root, '/etc/nvpmodel.conf') or '')
    return mode, {int(i): n for i, n in names}.get(mode, 'mode {}'.format(mode))


def _gpu_devfreq(root: str) -> Optional[str]:
    """Return the GPU's devfreq folder (gp10b: TX2, gv11b: Xavier, ga10b/gpu-gpc: Orin)."""
    base = os.path.join(root, 'sys/class/devfreq')
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return None
    for name in names:
        if re.search(r'gp10b|gv11b|ga10b|gb10b|gpu|gm20b', name):
            return os.path.join('/sys/class/devfreq', name)
    return None


def read_sysfs(root: str = '/') -> Dict[str, Any]:
    """Return the board's state from sysfs and /etc; ``jetson`` False on anything else.

    Keys besides those of `parse_tegrastats` (which fill in what sysfs cannot say): jetson,
    model, power_mode ((id, name) or None), gpu_max_mhz, trips ({zone: passive trip C}).
    """
    release = _read(root, '/etc/nv_tegra_release')
    model = _read(root, '/proc/device-tree/model') or ''
    state = {'jetson': bool(release) or 'jetson' in model.lower() or
             'tegra' in (_read(root, '/proc/device-tree/compatible') or '').lower(),
             'model': model or (release or '').split(',')[0]}  # type: Dict[str, Any]
    meminfo = _read(root, '/proc/meminfo') or ''
    fields = {k: float(v) / 1024.0
              for k, v in re.findall(r'^(\w+):\s+(\d+) kB', meminfo, re.M)}
    if 'MemTotal' in fields:
        available = fields.get('MemAvailable', fields.get('MemFree', 0.0))
        state['ram_total_mb'] = fields['MemTotal']
        state['ram_used_mb'] = fields['MemTotal'] - available
        state['swap_total_mb'] = fields.get('SwapTotal', 0.0)
        state['swap_used_mb'] = fields.get('SwapTotal', 0.0) - fields.get('SwapFree', 0.0)
    if not state['jetson']:
        return state
    state['power_mode'] = power_mode(root)
    devfreq = _gpu_devfreq(root)
    if devfreq is not None:
        current = _number(_read(root, devfreq + '/cur_freq'))
        available = [float(f) for f in (_read(root, devfreq + '/available_frequencies') or
                                        '').split() if f.isdigit()]
        highest = max(available) if available else _number(_read(root, devfreq + '/max_freq'))
        if current is not None:
            state['gpu_mhz'] = current / 1e6
        if highest is not None:
            state['gpu_max_mhz'] = highest / 1e6
    load = _number(_read(root, '/sys/devices/gpu.0/load'))  # per mille
    if load is not None:
        state['gpu_load'] = load / 10.0
    temps, trips = {}, {}
    zones = os.path.join(root, 'sys/class/thermal')
    for zone in sorted(os.listdir(zones)) if os.path.isdir(zones) else ():
        if not zone.startswith('thermal_zone'):
            continue
        path = '/sys/class/thermal/' + zone
        name, temp = _read(root, path + '/type'), _number(_read(root, path + '/temp'))
        if not name or temp is None or temp / 1000.0 <= NO_READING_C:
            continue
        temps[name] = temp / 1000.0
        passive = [_number(_read(root, '{}/trip_point_{}_temp'.format(path, i)))
                   for i in range(16)
                   if _read(root, '{}/trip_point_{}_type'.format(path, i)) == 'passive']
        passive = [t / 1000.0 for t in passive if t is not None and t > 0]
        if passive:
            trips[name] = min(passive)
    if temps:
        state['temps'] = temps
    state['trips'] = trips
    return state


def board_state(root: str = '/', tegrastats_line: str = '',
                sysfs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Return sysfs's state, with what the tegrastats line adds (EMC) or says it lacks.

    :param sysfs: `read_sysfs`'s result when already read (it is not read again).
    """
    state = dict(sysfs) if sysfs is not None else read_sysfs(root)
    if state['jetson'] and tegrastats_line:
        for key, value in parse_tegrastats(tegrastats_line).items():
            if key == 'temps':
                state['temps'] = dict(value, **state.get('temps', {}))
            elif key not in state:  # sysfs first; the line adds EMC and what sysfs lacks
                state[key] = value
    return state


def assess(state: Dict[str, Any]) -> Tuple[str, str, List[Tuple[str, str]]]:
    """Return (level 'ok' or 'warn', message, values) for a board state.

    warn: the GPU or memory clock below its maximum under load, a power mode other than 0
    (MAXN on every Jetson) while they are, a zone past its passive trip point (throttling),
    RAM nearly full. The message names each with its fix.
    """
    values = []  # type: List[Tuple[str, str]]
    for key in ('ram_used_mb', 'ram_total_mb', 'swap_used_mb', 'swap_total_mb'):
        if key in state:
            values.append((key, '{:.0f}'.format(state[key])))
    if not state.get('jetson'):
        return 'ok', 'not a Jetson ({}): no power mode, clocks or throttling to report'.format(
            state.get('model') or 'no /etc/nv_tegra_release'), values
    mode = state.get('power_mode')
    values.insert(0, ('model', str(state.get('model', ''))))
    values.insert(1, ('power_mode', '{} ({})'.format(mode[1], mode[0]) if mode else 'unknown'))
    problems, fixes = [], []
    for engine, busy, what in (('gpu', GPU_LOAD_BUSY, 'GPU'), ('emc', EMC_LOAD_BUSY, 'memory')):
        load, mhz, most = (state.get(engine + '_load'), state.get(engine + '_mhz'),
                           state.get(engine + '_max_mhz'))
        for suffix, value in (('_load_percent', load), ('_mhz', mhz), ('_max_mhz', most)):
            if value is not None:
                values.append((engine + suffix, '{:.0f}'.format(value)))
        if None not in (load, mhz, most) and load >= busy and mhz < AT_MAX * most:
            problems.append('{} clock {:.0f} of {:.0f} MHz at {:.0f} % load'.format(
                what, mhz, most, load))
            fixes.append(FIX_CLOCKS)
            if mode and mode[0] != 0:
                problems[-1] += ' (power mode {} caps it)'.format(mode[1])
                fixes.append(FIX_MODE)
    hot = []
    for zone, temp in sorted(state.get('temps', {}).items()):
        values.append(('temp.' + zone, '{:.1f}'.format(temp)))
        trip = state.get('trips', {}).get(zone)
        if trip is not None and temp >= trip:
            hot.append('{} {:.1f} C (passive trip {:.0f} C)'.format(zone, temp, trip))
    values.append(('throttling', 'yes: ' + ', '.join(hot) if hot else 'no'))
    if hot:
        problems.append('the board throttles: ' + ', '.join(hot))
        fixes.append('{} (it also runs the fan at full speed) and better cooling'.format(
            FIX_CLOCKS))
    total = state.get('ram_total_mb')
    if total and state.get('ram_used_mb', 0.0) >= RAM_NEARLY_FULL * total:
        problems.append('RAM {:.0f} of {:.0f} MB used (shared with the GPU)'.format(
            state['ram_used_mb'], total))
        fixes.append('fewer processes, a smaller model or batch, or swap')
    if not problems:
        return 'ok', '{}, power mode {}: clocks and temperatures fine'.format(
            state.get('model') or 'Jetson', mode[1] if mode else 'unknown'), values
    unique = []
    for fix in fixes:
        if fix not in unique:
            unique.append(fix)
    return 'warn', '{}. Fix: {}'.format('; '.join(problems), '; '.join(unique)), values


class TegrastatsReader(object):
    """The latest line of a ``tegrastats --interval MS`` child, started on first use.

    Absent ``tegrastats`` (not a Jetson), `latest` returns ''. The child is a daemon-owned
    subprocess: `close` ends it (the node's cleanup and shutdown do).
    """

    def __init__(self, interval_ms: int = 1000, command: Optional[List[str]] = None) -> None:
        """Remember how to start it; nothing runs until `latest`."""
        self._command = command or ['tegrastats', '--interval', str(interval_ms)]
        self._lock = threading.Lock()
        self._line = ''
        self._process = None  # type: Optional[subprocess.Popen]
        self._tried = False

    def latest(self) -> str:
        """Return the last line tegrastats printed ('' before its first, or without it)."""
        with self._lock:
            if not self._tried:
                self._tried = True
                self._start()
            return self._line

    def _start(self) -> None:
        if shutil.which(self._command[0]) is None:
            return
        try:
            self._process = subprocess.Popen(self._command, stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL,
                                              universal_newlines=True)
        except OSError:
            return
        threading.Thread(target=self._follow, args=(self._process,), daemon=True,
                         name='tegrastats').start()

    def _follow(self, process: Any) -> None:
        for line in process.stdout:
            with self._lock:
                self._line = line.strip()

    def close(self) -> None:
        """End the child, if one runs."""
        with self._lock:
            process, self._process = self._process, None
            self._tried = False
            self._line = ''
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                process.kill()


def resident_mb() -> Optional[float]:
    """Return this process's resident memory (VmRSS) in MB, or None where unknown."""
    status = _read('/', '/proc/self/status') or ''
    match = re.search(r'^VmRSS:\s+(\d+) kB', status, re.M)
    return float(match.group(1)) / 1024.0 if match else None
