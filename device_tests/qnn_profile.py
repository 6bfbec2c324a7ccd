"""Qualcomm QNN on the phone: the qnn-net-run command line, the SDK files it needs, whether the
SDK can load our context binary, its input_list, and its profile as qnn-profile-viewer prints it.

qnn-net-run runs the QNN context binary (the EPContext node's payload) straight on the HTP, the
same program the ONNX Runtime QNN EP loads, and its profile splits execute time into the host's
RPC round trip and the accelerator's own time: what the device-bench reports beside wall time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from edgevlm.device_tests.devices.base import unavailable

INSTALL = ("install the QAIRT SDK (Qualcomm AI Engine Direct; https://www.qualcomm.com/developer/software/"
           "qualcomm-ai-engine-direct-sdk) and export QNN_SDK_ROOT=<its folder, e.g. /opt/qcom/aistack/qairt/2.31.0.250130>")


def sdk_files(root: str | Path, hexagon: str = "v75") -> dict[str, Path]:
    """Bundle path -> SDK file for an aarch64 Android phone with a Hexagon `hexagon` HTP
    (v75: Snapdragon 8 Gen 3). libQnnSystem.so reads the context binary's metadata for
    --retrieve_context; the Skel runs on the DSP and is found through ADSP_LIBRARY_PATH."""
    r, v = Path(root), hexagon.upper()
    return {
        "bin/qnn-net-run": r / "bin/aarch64-android/qnn-net-run",
        "lib/libQnnHtp.so": r / "lib/aarch64-android/libQnnHtp.so",
        "lib/libQnnSystem.so": r / "lib/aarch64-android/libQnnSystem.so",
        f"lib/libQnnHtp{v}Stub.so": r / f"lib/aarch64-android/libQnnHtp{v}Stub.so",
        f"lib/libQnnHtp{v}Skel.so": r / f"lib/hexagon-{hexagon}/unsigned/libQnnHtp{v}Skel.so",
    }


def qnn_sdk_problem(root: str | None = None, hexagon: str = "v75") -> str | None:
    """What keeps the SDK at root (default $QNN_SDK_ROOT) from serving a phone run, with the fix."""
    root = root if root is not None else os.environ.get("QNN_SDK_ROOT")
    if not root:
        return f"QNN_SDK_ROOT is not set: {INSTALL}"
    if not Path(root).is_dir():
        return f"QNN_SDK_ROOT={root} is not a folder: {INSTALL}"
    for rel, path in sdk_files(root, hexagon).items():
        if not path.is_file():
            return (f"the QNN SDK at {root} has no {path.relative_to(root)} (needed as {rel}): "
                    f"reinstall the full QAIRT SDK (the Android and hexagon-{hexagon} folders are part of it)")
    return None


VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?")


def sdk_version(root: str | Path) -> str | None:
    """The SDK's version: sdk.yaml's `version:` line, else the folder's name (2.31.0.250130)."""
    y = Path(root) / "sdk.yaml"
    if y.is_file():
        m = re.search(r"^version:\s*['\"]?([0-9][0-9.]*)", y.read_text(errors="replace"), re.M)
        if m:
            return m.group(1)
    m = VERSION_RE.search(Path(root).resolve().name)
    return m.group(0) if m else None


def _triple(version: str) -> tuple[int, int, int]:
    m = VERSION_RE.search(version or "")
    if not m:
        raise ValueError(f"{version!r} is not a QNN version (like 2.31.0 or 2.31.0.250130)")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def context_compatible(sdk_version: str, producer_version: str) -> str | None:
    """A context binary loads on libQnnHtp from the QNN release that made it or a later one of
    the same major; an older loader rejects the newer serialization. None when it loads."""
    try:
        have, made = _triple(sdk_version), _triple(producer_version)
    except ValueError as e:
        return str(e)
    if have[0] != made[0]:
        return (f"the context binary was made by QNN {producer_version} (major {made[0]}); QNN {sdk_version} "
                f"(major {have[0]}) cannot load it: use a QAIRT SDK {made[0]}.x at least {producer_version}, "
                "or re-export the artifacts with this SDK's QNN")
    if have < made:
        return (f"the context binary was made by QNN {producer_version}; this SDK is QNN {sdk_version}, older: "
                f"install QAIRT {'.'.join(map(str, made))} or newer (same major), or re-export with this SDK")
    return None


def qnn_net_run_argv(folder: str, context: str, input_list: str, output_dir: str, num_inferences: int,
                     profiling_level: str = "basic", perf_profile: str = "burst") -> list[str]:
    """The phone-side command (for ShellDevice.shell, cwd=folder). `env` sets the library paths:
    LD_LIBRARY_PATH for the ARM libraries, ADSP_LIBRARY_PATH (`;`-separated) for the DSP Skel."""
    return ["env", f"LD_LIBRARY_PATH={folder}/lib",
            f"ADSP_LIBRARY_PATH={folder}/lib;/vendor/lib/rfsa/adsp;/vendor/dsp",
            f"{folder}/bin/qnn-net-run", "--retrieve_context", context, "--backend", f"{folder}/lib/libQnnHtp.so",
            "--input_list", input_list, "--output_dir", output_dir, "--profiling_level", profiling_level,
            "--perf_profile", perf_profile, "--num_inferences", str(num_inferences)]


def epcontext_input_names(model_path: str | Path) -> list[str]:
    """The EPContext model's graph inputs in order (qnn-net-run binds input_list entries by name)."""
    import onnx

    g = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    return [i.name for i in g.input if i.name not in inits]


def _as_raw(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype in (np.float32, np.int32):
        return a
    if a.dtype == np.float64:
        return a.astype(np.float32)
    if a.dtype == np.int64:
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
            raise ValueError(f"input {name!r} has int64 values outside int32")
        return a.astype(np.int32)
    raise ValueError(f"input {name!r} is {a.dtype}; qnn-net-run's raw inputs here are float32 or int32")


def write_input_list(out: str | Path, runs: list[dict[str, np.ndarray]], order: list[str],
                     device_dir: str = "inputs") -> Path:
    """inputs/<run>/<name>.raw (C-order float32/int32) and input_list.txt, one line per run with
    `name:=path` entries in the model's input order; paths are as the phone sees them."""
    out = Path(out)
    lines = []
    for k, run in enumerate(runs):
        if set(run) != set(order):
            raise ValueError(f"run {k} has inputs {sorted(run)}; the model takes {order}")
        entries = []
        for name in order:
            rel = f"{k}/{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.raw"
            (out / "inputs" / rel).parent.mkdir(parents=True, exist_ok=True)
            np.ascontiguousarray(_as_raw(name, run[name])).tofile(out / "inputs" / rel)
            entries.append(f"{name}:={device_dir}/{rel}")
        lines.append(" ".join(entries))
    path = out / "input_list.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- qnn-profile-viewer text ------------------------------------------------------------------

SECTION_RE = re.compile(r"^(?:--- )?(Init Stats|Compose Graphs Stats|Finalize Stats|De-Init Stats|"
                        r"Execute Stats \((?:Overall|Average|Min|Max)\)):\s*$")
VALUE_RE = re.compile(r"^\s*(.+?):\s+([0-9.]+)\s*(us|cycles|count|inf/sec)\s*$")


def parse_profile_viewer(text: str) -> dict:
    """Sections (Init, Compose Graphs, Finalize, De-Init, Execute Overall/Average/Min/Max) ->
    {label: (value, unit)}, graph-level and top-level lines merged per section."""
    sections: dict[str, dict[str, tuple[float, str]]] = {}
    current = None
    version = None
    for line in text.splitlines():
        m = SECTION_RE.match(line.strip())
        if m:
            current = m.group(1)
            sections.setdefault(current, {})
            continue
        if version is None and "version" in line.lower() and (v := VERSION_RE.search(line)):
            version = v.group(0)
        m = VALUE_RE.match(line)
        if m and current:
            sections[current].setdefault(m.group(1).strip(), (float(m.group(2)), m.group(3)))
    return {"sections": sections, "version": version}


def _ms(section: dict, *labels: str):
    for label in labels:
        if label in section and section[label][1] == "us":
            return section[label][0] / 1000
    return None


def profile_summary(text: str) -> dict:
    """The schema's QNN timing block from qnn-profile-viewer's report (milliseconds)."""
    p = parse_profile_viewer(text)
    s = p["sections"]
    if not s:
        return {"qnn_profile": unavailable("qnn-profile-viewer printed no Init/Execute sections")}
    init, avg = s.get("Init Stats", {}), s.get("Execute Stats (Average)", {})
    out = {
        "init_ms": _ms(init, "NetRun"),
        "load_binary_rpc_ms": _ms(init, "Backend (RPC (load binary) time)"),
        "load_binary_accelerator_ms": _ms(init, "Backend (Accelerator (load binary) time)",
                                          "Backend (QNN accelerator (load binary) time)"),
        "compose_ms": _ms(s.get("Compose Graphs Stats", {}), "NetRun"),
        "finalize_ms": _ms(s.get("Finalize Stats", {}), "NetRun"),
        "deinit_ms": _ms(s.get("De-Init Stats", {}), "NetRun"),
        "execute_avg_ms": _ms(avg, "NetRun"),
        "execute_min_ms": _ms(s.get("Execute Stats (Min)", {}), "NetRun"),
        "execute_max_ms": _ms(s.get("Execute Stats (Max)", {}), "NetRun"),
        "execute_rpc_ms": _ms(avg, "Backend (RPC (execute) time)"),
        "execute_qnn_accelerator_ms": _ms(avg, "Backend (QNN accelerator (execute) time)"),
        "execute_accelerator_ms": _ms(avg, "Backend (Accelerator (execute) time)"),
        "hvx_threads": avg.get("Backend (Number of HVX threads used)", (None,))[0],
        "inferences_per_s": s.get("Execute Stats (Overall)", {}).get("NetRun IPS", (None,))[0],
        "per_inference_ms": unavailable("qnn-profile-viewer's text report aggregates the runs "
                                        "(average, min, max); per-run times are not in it"),
        "qnn_version": p["version"] or unavailable("the report has no version line"),
    }
    for k, v in out.items():
        if v is None:
            out[k] = unavailable(f"not in this qnn-profile-viewer report ({k})")
    return out
