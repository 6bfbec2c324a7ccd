"""Qualcomm AI Hub: compile the QNN vision artifact for a real device in Qualcomm's farm and profile it.

Needs the `qai-hub` package (`pip install 'edgevlm[farm]'`), an API token and the network. The
token comes from `~/.qai_hub/client.ini` (written by `qai-hub configure --api_token TOKEN`) or the
QAI_HUB_API_TOKEN environment variable. We upload the QDQ model the local QNN compile started
from (`<stem>.qdq.onnx`, the manifest's `source_sha256`), let AI Hub compile it to a QNN context
binary for the device, and run a profiling inference job there. The job's profile (AI Hub's
`download_profile()` dict: execution_summary in microseconds and bytes, per-layer compute units)
becomes a bench-schema report, so farm numbers sit beside host numbers in the same reports.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgevlm.backends.base import BackendError, MissingTool, require
from edgevlm.stats import timing_summary

DEFAULT_DEVICE = "Samsung Galaxy S24 (Family)"  # Snapdragon 8 Gen 3
TOKEN_ENV = "QAI_HUB_API_TOKEN"
CONFIG_FILE = Path("~/.qai_hub/client.ini")
NO_TOKEN_FIX = (f"get a token at https://aihub.qualcomm.com (Account page), then run `qai-hub configure "
                f"--api_token TOKEN` or export {TOKEN_ENV}=TOKEN")


def token_problem() -> str | None:
    """Why AI Hub cannot be reached with credentials from this machine, or None."""
    if os.environ.get(TOKEN_ENV):
        return None
    if CONFIG_FILE.expanduser().is_file():
        return None
    return f"no Qualcomm AI Hub API token: {CONFIG_FILE} does not exist and {TOKEN_ENV} is not set"


def client():
    """An authenticated qai_hub client, or a BackendError naming what is missing and the fix."""
    problem = token_problem()
    if problem:
        raise MissingTool(problem, NO_TOKEN_FIX)
    hub = require("qai_hub", "'edgevlm[farm]'  (or: pip install qai-hub)", "Qualcomm AI Hub")
    token = os.environ.get(TOKEN_ENV)
    if token:
        return hub.Client(config=hub.ClientConfig(api_token=token))
    return hub.Client()  # reads ~/.qai_hub/client.ini


def qnn_source(manifest: dict, root: Path) -> tuple[dict, Path]:
    """The QNN vision artifact of a manifest and its QDQ model file."""
    for artifact in manifest["artifacts"]:
        if artifact["target"] == "qnn":
            qdq = next((root / e["file"] for e in artifact.get("extra_files", []) if e["file"].endswith(".qdq.onnx")),
                       None)
            if qdq is None or not qdq.is_file():
                raise BackendError(f"the QNN artifact {artifact['file']} has no QDQ model beside it",
                                   "re-export with the android-sd8g3 recipe")
            return artifact, qdq
    raise BackendError("the manifest has no QNN (android-sd8g3) vision artifact to submit",
                       "export one: edgevlm export --model DIR --recipe android-sd8g3 --out DIR --part vision")


def input_specs(artifact: dict) -> dict:
    return {i["name"]: (tuple(i["shape"]), i["dtype"]) for i in artifact["inputs"]}


def submit(root: Path, manifest: dict, device_name: str = DEFAULT_DEVICE, wait: bool = True) -> dict:
    """Compile + profile on AI Hub. Returns {"jobs": {...}, "profile": dict | None}."""
    hub_client = client()
    artifact, qdq = qnn_source(manifest, root)
    hub = require("qai_hub", "qai-hub", "Qualcomm AI Hub")
    device = hub.Device(device_name)
    compile_job = hub_client.submit_compile_job(
        model=str(qdq), device=device, name=f"edgevlm {artifact['file']}", input_specs=input_specs(artifact),
        options="--target_runtime qnn_context_binary")
    jobs = {"compile": compile_job.job_id, "url": compile_job.url}
    if not wait:
        return {"jobs": jobs, "profile": None}
    target = compile_job.get_target_model()  # blocks until the compile job finishes
    if target is None:
        raise BackendError(f"AI Hub compile job {compile_job.job_id} failed: {compile_job.get_status().message}",
                           f"open {compile_job.url} for the compiler log")
    profile_job = hub_client.submit_inference_job(model=target, device=device, profile=True,
                                                  name=f"edgevlm profile {artifact['file']}")
    jobs["profile"] = profile_job.job_id
    if not profile_job.wait().success:
        raise BackendError(f"AI Hub profile job {profile_job.job_id} failed", f"open {profile_job.url}")
    return {"jobs": jobs, "profile": profile_job.download_profile()}


def profile_result(profile: dict, artifact: dict, device_name: str) -> dict:
    """AI Hub's profile dict -> one bench-schema result entry (times in ms, memory in bytes)."""
    summary = profile["execution_summary"]
    times_us = summary.get("all_inference_times") or [summary["estimated_inference_time"]]
    times_ms = [t / 1000 for t in times_us]
    layers = profile.get("execution_detail", [])
    units = {}
    for layer in layers:
        units[layer["compute_unit"]] = units.get(layer["compute_unit"], 0) + 1
    return {
        "runtime": f"aihub-qnn:{artifact['precision']}", "artifact": artifact["file"], "sha256": artifact["sha256"],
        "max_patches": artifact["max_patches"], "batch": artifact["batch"], "status": "ok",
        "metrics": timing_summary(times_ms, warmup=0) | {
            "peak_memory_bytes": summary.get("estimated_inference_peak_memory"),
            "first_load_ms": (summary.get("first_load_time") or 0) / 1000 or None,
            "layers_by_compute_unit": units},
        "note": f"Qualcomm AI Hub, {device_name}",
    }
