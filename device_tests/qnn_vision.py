"""Vision encode on the phone's Hexagon HTP with Qualcomm's own qnn-net-run, from the user's
QAIRT SDK ($QNN_SDK_ROOT), profiled, as one `edgevlm.bench/2` result.

The QNN export's context binary (the EPContext node's payload) is what runs: qnn-net-run loads
it with --retrieve_context on libQnnHtp.so, and its basic profile splits execute time into the
host's RPC round trip and the accelerator's own time. The SDK is Qualcomm's and licensed, so
edgevlm never ships it: without it the result is "not run" naming what to install, and the rest
of device-bench goes on.

Layout on the phone, beside the pushed bundle (`<folder>/artifacts/...`):
    <folder>/qnn/bin/qnn-net-run, <folder>/qnn/lib/*.so (the SDK's Android files and the DSP skel)
    <folder>/qnn/inputs/0/<input>.raw, <folder>/qnn/input_list.txt (the bench slice, float32/int32)
    <folder>/qnn/output/ (qnn-net-run's outputs and its qnn-profiling-data log)
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from edgevlm.device_tests.devices.base import is_unavailable, unavailable
from edgevlm.device_tests.qnn_profile import (INSTALL, context_compatible, epcontext_input_names, profile_summary,
                                              qnn_net_run_argv, qnn_sdk_problem, sdk_files, sdk_version,
                                              write_input_list)
from edgevlm.errors import EdgeVLMError

VIEWER = "bin/x86_64-linux-clang/qnn-profile-viewer"  # the SDK's host tool that reads the binary profile log
PROFILE_TEXT = "qnn-profile.txt"
PROFILE_LOG = "qnn-profiling-data.log"
NO_MEMORY = "qnn-net-run does not report memory use"
AGGREGATED = ("qnn-profile-viewer's text report aggregates the {n} inferences (average, min, max): "
              "it has no per-inference times")


def qnn_artifact(manifest: dict) -> dict | None:
    return next((a for a in manifest["artifacts"] if a["part"] == "vision" and a["target"] == "qnn"), None)


def _sdk_root(sdk_root: str | None) -> str | None:
    return sdk_root if sdk_root is not None else os.environ.get("QNN_SDK_ROOT")


def sdk_problem(root: str | None, hexagon: str, producer: str | None) -> str | None:
    """What keeps the SDK at root from running our context binary on the phone (None: it can)."""
    problem = qnn_sdk_problem(root or "", hexagon)  # "" rather than None: root already read $QNN_SDK_ROOT
    if problem:
        return problem
    if not (Path(root) / VIEWER).is_file():
        return (f"the QNN SDK at {root} has no {VIEWER} (the host tool that reads qnn-net-run's profile; "
                f"it ships for x86_64 Linux, this host is {platform.machine()}): reinstall the full QAIRT SDK")
    have = sdk_version(root)
    if have is None:
        return (f"cannot tell the version of the QNN SDK at {root}: it has no sdk.yaml and its folder name holds "
                f"no version; {INSTALL}")
    return context_compatible(have, producer) if producer else None


def _push_inputs(device, qnn: str, artifacts: Path, manifest: dict, artifact: dict, staging: Path) -> dict:
    """The bench slice padded to the artifact's static shape, as raw files in the EPContext
    model's input order (qnn-net-run binds input_list entries by name), pushed under qnn/."""
    from edgevlm.device_tests.host_bench import BenchSlice

    bench_slice = BenchSlice(artifacts, manifest)
    order = epcontext_input_names(artifacts / artifact["file"])
    write_input_list(staging, [bench_slice.inputs(artifact)], order)
    files = {"input_list.txt": staging / "input_list.txt"}
    files |= {f"inputs/0/{p.name}": p for p in sorted((staging / "inputs/0").iterdir())}
    device.shell(["mkdir", "-p", f"{qnn}/inputs/0"], timeout=60).check("mkdir for the QNN inputs on the phone")
    for rel, local in files.items():
        device.push_file(local, f"{qnn}/{rel}")
    return bench_slice.describe() | {"inputs": order}


def _push_sdk(device, qnn: str, root: str, hexagon: str) -> None:
    device.shell(["mkdir", "-p", f"{qnn}/bin", f"{qnn}/lib"], timeout=60).check("mkdir for the QNN SDK on the phone")
    for rel, local in sdk_files(root, hexagon).items():
        device.push_file(local, f"{qnn}/{rel}")
    device.shell(["chmod", "755", f"{qnn}/bin/qnn-net-run"], timeout=60).check("chmod qnn-net-run on the phone")


def _profile_log(device, qnn: str, raw: Path) -> Path | str:
    """Pull qnn-net-run's profiling log (qnn-profiling-data_0.log; older SDKs drop the _0)."""
    listing = device.shell(["ls", f"{qnn}/output"], timeout=30)
    logs = sorted(n for n in listing.stdout.split() if n.startswith("qnn-profiling-data") and n.endswith(".log"))
    if listing.returncode or not logs:
        return f"qnn-net-run wrote no qnn-profiling-data log in {qnn}/output (`ls` printed: {listing.stdout.strip()!r})"
    device.pull(f"{qnn}/output/{logs[0]}", raw / PROFILE_LOG)
    return raw / PROFILE_LOG


def _view(root: str, log: Path, raw: Path) -> str:
    r = subprocess.run([str(Path(root) / VIEWER), "--input_log", str(log)], capture_output=True, text=True,
                       timeout=300)
    (raw / PROFILE_TEXT).write_text(r.stdout + (f"\n[stderr]\n{r.stderr}" if r.stderr.strip() else ""))
    if r.returncode:
        raise EdgeVLMError(f"qnn-profile-viewer failed on {log} (exit {r.returncode}): {r.stderr.strip()[-800:]}",
                           f"run `{Path(root) / VIEWER} --input_log {log}` by hand; its output is in {raw / PROFILE_TEXT}")
    return r.stdout


def _timings(summary: dict, n: int) -> dict:
    """The schema's timing fields from the profile: load is init + graph compose, warm metrics are
    the profile's aggregates over all n inferences (the first included, none left out)."""
    mean = summary.get("execute_avg_ms", summary.get("qnn_profile"))
    if is_unavailable(mean):
        return {"status": "not run", "reason": f"qnn-net-run ran but its profile has no average execute time: "
                                               f"{mean['unavailable']}"}
    load, compose = summary["init_ms"], summary["compose_ms"]
    if not is_unavailable(load) and not is_unavailable(compose):
        load += compose
    aggregated = AGGREGATED.format(n=n)
    metrics = {"runs": n, "warmup": 0, "median_ms": unavailable(aggregated), "p90_ms": unavailable(aggregated),
               "min_ms": summary["execute_min_ms"], "max_ms": summary["execute_max_ms"], "mean_ms": mean,
               "std_ms": unavailable(aggregated)}
    return {"status": "ok", "load_ms": load,
            "cold_ms": unavailable(f"{aggregated}; the first (cold) inference is inside the average"),
            "metrics": metrics, "metrics_note": f"all {n} inferences (warm-up + runs) of one qnn-net-run, none left out",
            "accelerator_ms": summary["execute_accelerator_ms"], "rpc_ms": summary["execute_rpc_ms"]}


def qnn_vision_result(device, folder: str, artifacts: Path, manifest: dict, plan, raw: Path,
                      sdk_root: str | None = None) -> dict | None:
    """The QNN vision artifact run by qnn-net-run on an AdbDevice whose bundle is at `folder`.

    sdk_root None reads $QNN_SDK_ROOT when called. Returns None without a `qnn` vision artifact;
    a missing or too old SDK, or a failing qnn-net-run, is a "not run" result with the reason."""
    artifact = qnn_artifact(manifest)
    if artifact is None:
        return None
    details = artifact.get("details", {})
    hexagon = f"v{details.get('provider_options', {}).get('htp_arch', 75)}"
    producer = details.get("qnn_version")
    root = _sdk_root(sdk_root)
    entry = {"part": "vision", "runtime": f"qnn-htp:{artifact['precision']} (qnn-net-run)", "artifact": artifact["file"],
             "sha256": artifact["sha256"], "emulated": False, "max_patches": artifact["max_patches"],
             "batch": artifact["batch"],
             "qnn_context": {"binary": details.get("context_binary"), "hexagon": hexagon,
                             "made_by_qnn": producer or unavailable(
                                 "the manifest does not record the QNN version that compiled the context "
                                 "(exported before edgevlm recorded details.qnn_version): compatibility not checked")}}
    problem = sdk_problem(root, hexagon, producer)
    if problem:
        return entry | {"status": "not run", "reason": problem}
    entry["qnn_sdk"] = {"root": root, "version": sdk_version(root)}
    raw.mkdir(parents=True, exist_ok=True)
    qnn = f"{folder}/qnn"
    _push_sdk(device, qnn, root, hexagon)
    entry["slice"] = _push_inputs(device, qnn, artifacts, manifest, artifact, raw / "qnn-inputs")
    n = plan.runs + plan.warmup
    device.shell(["rm", "-rf", f"{qnn}/output"], timeout=60).check("clearing the QNN output folder on the phone")
    argv = qnn_net_run_argv(qnn, f"{folder}/artifacts/{details['context_binary']}", "input_list.txt", "output", n)
    run = device.shell(argv, cwd=qnn, timeout=600 + 10 * n)
    (raw / "qnn-net-run.log").write_text(f"$ {' '.join(argv)}\n{run.stdout}\n[stderr]\n{run.stderr}")
    if run.returncode:
        tail = (run.stderr or run.stdout).strip()[-800:]
        return entry | {"status": "not run", "reason": f"qnn-net-run failed on the phone (exit {run.returncode}): "
                                                       f"{tail}; its output is in {raw / 'qnn-net-run.log'}"}
    log = _profile_log(device, qnn, raw)
    if isinstance(log, str):
        return entry | {"status": "not run", "reason": log}
    try:
        text = _view(root, log, raw)
    except (EdgeVLMError, OSError, subprocess.TimeoutExpired) as e:  # the run happened: say why it has no numbers
        why = f"{e.problem} ({e.fix})" if isinstance(e, EdgeVLMError) else f"qnn-profile-viewer could not run: {e}"
        return entry | {"status": "not run", "reason": why}
    summary = profile_summary(text)
    return entry | _timings(summary, n) | {
        "peak_memory_bytes": unavailable(NO_MEMORY), "qnn_profile": summary,
        "raw_files": [PROFILE_TEXT, PROFILE_LOG, "qnn-net-run.log"]}
