"""Run a command under a memory cap and measure what it used: how exports are held to a CI runner's
memory (16 GB) on a bigger machine.

The cap is a memory cgroup when this process may create one (cgroup v2 `memory.max`, or v1
`memory.limit_in_bytes` + `memsw`): the kernel then reclaims page cache (memory-mapped shards,
parked tensors) before it kills the job, as on a real 16 GB runner. Where no cgroup can be made
(no permission, no memory controller) a watchdog samples the process tree's RSS every 50 ms and
kills it past the cap; RSS counts page cache the kernel could have reclaimed, so that cap is
stricter than a real runner's. The result says which one ran.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")


@dataclass
class CappedRun:
    returncode: int
    seconds: float
    cap_bytes: int
    method: str  # cgroup-v2 | cgroup-v1 | watchdog
    peak_bytes: int  # cgroup: peak charged memory (RSS + page cache); watchdog: peak sampled RSS
    peak_rss_bytes: int  # the largest VmHWM of a process of the tree, sampled
    peak_anon_bytes: int  # the largest sampled RssAnon sum of the tree
    killed_for_memory: bool
    stdout: str = ""
    stderr: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("stdout", "stderr")}


def _tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc/*/stat parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _status(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) * 1024 for k, _, v in (line.partition(":") for line in lines)
            if k in ("VmRSS", "VmHWM", "RssAnon")}


class _Sampler(threading.Thread):
    def __init__(self, pid: int, cap: int | None, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.cap, self.interval = pid, cap, interval
        self.peak_rss = self.peak_anon = self.peak_hwm = 0
        self.killed = False
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            stats = [_status(p) for p in _tree(self.pid)]
            rss = sum(s.get("VmRSS", 0) for s in stats)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_anon = max(self.peak_anon, sum(s.get("RssAnon", 0) for s in stats))
            self.peak_hwm = max([self.peak_hwm] + [s.get("VmHWM", 0) for s in stats])
            if self.cap is not None and rss > self.cap and not self.killed:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _own_memory_cgroup() -> tuple[Path, str] | None:
    """(folder, version) of the memory cgroup this process is in, from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    unified = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = CGROUP_FS / "memory" / path.lstrip("/")
            return (folder, "cgroup-v1") if (folder / "memory.limit_in_bytes").is_file() else None
        if controllers == "":
            unified = CGROUP_FS / path.lstrip("/")
    if unified is not None and "memory" in _read(unified / "cgroup.subtree_control"):
        return unified, "cgroup-v2"
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class _Cgroup:
    """A memory cgroup made for one run and removed after it."""

    def __init__(self, cap: int):
        self.path, self.version = None, None
        name = f"edgevlm-cap-{uuid.uuid4().hex[:8]}"
        own = _own_memory_cgroup()  # a child of our own cgroup: never outside a container's limits
        if own is not None and own[1] == "cgroup-v2":
            self._make(own[0] / name, {"memory.max": cap, "memory.swap.max": 0}, "cgroup-v2")
        elif own is not None:
            self._make(own[0] / name, {"memory.limit_in_bytes": cap, "memory.memsw.limit_in_bytes": cap},
                       "cgroup-v1")

    def _make(self, path: Path, limits: dict, version: str) -> None:
        try:
            path.mkdir()
        except OSError:
            return
        try:
            for key, value in limits.items():
                if (path / key).exists():
                    (path / key).write_text(str(value))
        except OSError:
            path.rmdir()
            return
        self.path, self.version = path, version

    def peak(self) -> int:
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            if (self.path / name).is_file():
                return int((self.path / name).read_text())
        return 0

    def oom_killed(self) -> bool:
        for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
            if (self.path / name).is_file():
                for line in (self.path / name).read_text().splitlines():
                    k, _, v = line.partition(" ")
                    if k == key and int(v or 0) > 0:
                        return True
        return False

    def remove(self) -> None:
        if self.path is not None:
            for _ in range(50):  # the cgroup can be removed once its last process has exited
                try:
                    self.path.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


class _Tee(threading.Thread):
    """Keeps a stream's text, echoing each line to our stderr as it comes (a long export's stages)."""

    def __init__(self, stream, echo: bool):
        super().__init__(daemon=True)
        self.stream, self.echo, self.lines = stream, echo, []

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line)
            if self.echo:
                sys.stderr.write(line)
                sys.stderr.flush()

    def text(self) -> str:
        self.join()
        return "".join(self.lines)


def run_capped(cmd: list[str], cap_bytes: int, env: dict | None = None, timeout: float | None = None,
               use_cgroup: bool = True, echo_stderr: bool = False) -> CappedRun:
    """Run cmd (output captured; stderr also echoed live with echo_stderr) under a memory cap; see the
    module docstring for how."""
    group = _Cgroup(cap_bytes) if use_cgroup else None
    method = group.version if group is not None and group.path is not None else "watchdog"
    notes = [] if method != "watchdog" else ["no memory cgroup could be created here: the cap is a watchdog on "
                                               "sampled RSS (page cache included), stricter than a runner's"]
    procs = group.path / "cgroup.procs" if method != "watchdog" else None

    def join_cgroup():  # in the child, before exec: every byte it allocates is charged to the cap
        if procs is not None:
            procs.write_text(str(os.getpid()))

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, preexec_fn=join_cgroup)
    sampler = _Sampler(proc.pid, cap_bytes if method == "watchdog" else None)
    sampler.start()
    out, err = _Tee(proc.stdout, False), _Tee(proc.stderr, echo_stderr)
    out.start(), err.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        notes.append(f"killed after the {timeout} s timeout")
    finally:
        sampler.stop()
    stdout, stderr = out.text(), err.text()
    seconds = time.perf_counter() - start
    if method == "watchdog":
        peak, killed = sampler.peak_rss, sampler.killed
    else:
        peak, killed = group.peak(), group.oom_killed()
        group.remove()
    return CappedRun(proc.returncode, seconds, cap_bytes, method, peak, sampler.peak_hwm, sampler.peak_anon, killed,
                     stdout, stderr, notes)
