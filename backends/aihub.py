"""Qualcomm AI Hub: compile the QNN vision artifact for a real device in Qualcomm's farm and profile it.

Needs the `qai-hub` package (the `farm` extra), an API token and the network, checked in that order
(`preflight`) so each missing piece is named with its fix before anything is uploaded. The
token comes from `~/.qai_hub/client.ini` (written by `qai-hub configure --api_token TOKEN`) or the
QAI_HUB_API_TOKEN environment variable. We upload the QDQ model the local QNN compile started
from (`<stem>.qdq.onnx`, the manifest's `source_sha256`), let AI Hub compile it to a QNN context
binary for the device, and run a profiling inference job there. The job's profile (AI Hub's
`download_profile()` dict: execution_summary in microseconds and bytes, per-layer compute units)
becomes a bench-schema report, so farm numbers sit beside host numbers in the same reports.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import socket
import statistics
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from edgevlm.backends.base import BackendError, MissingTool
from edgevlm.errors import EnvironmentProblem
from edgevlm.stats import timing_summary

DEFAULT_DEVICE = "Samsung Galaxy S24 (Family)"  # Snapdragon 8 Gen 3
TOKEN_ENV = "QAI_HUB_API_TOKEN"
CONFIG_ENV = "QAIHUB_CLIENT_INI"  # qai-hub's own override of the config file's path
CONFIG_FILE = Path("~/.qai_hub/client.ini")
DEFAULT_API_URL = "https://workbench.aihub.qualcomm.com"  # qai-hub 0.56's ClientConfig default
PROBE_TIMEOUT_S = 4.0
NO_TOKEN_FIX = (f"get a token at https://aihub.qualcomm.com (Account page), then run `qai-hub configure "
                f"--api_token TOKEN` or export {TOKEN_ENV}=TOKEN")


class Unreachable(EnvironmentProblem, BackendError):
    """The AI Hub API cannot be reached from this machine (offline, proxy, firewall)."""


def config_file() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or CONFIG_FILE).expanduser()


def install_hint() -> str:
    """`pip install -e '.[farm]'` in the checkout when edgevlm runs from one, else the released package."""
    root = Path(__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "edgevlm"' in pyproject.read_text(errors="replace"):
        return f"in the checkout ({root}): pip install -e '.[farm]'"
    return "pip install 'edgevlm[farm]'"


def client_problem() -> str | None:
    """Why the qai-hub client cannot be used here (not installed), or None. Checked without importing it."""
    if importlib.util.find_spec("qai_hub") is None:
        return "the Qualcomm AI Hub client (the qai-hub package) is not installed"
    return None


def token_problem() -> str | None:
    """Why AI Hub cannot be reached with credentials from this machine, or None."""
    if os.environ.get(TOKEN_ENV):
        return None
    if config_file().is_file():
        return None
    return f"no Qualcomm AI Hub API token: {config_file()} does not exist and {TOKEN_ENV} is not set"


def api_url() -> str:
    """The API the client will talk to: client.ini's [api] api_url, else qai-hub's default."""
    parser = configparser.ConfigParser()
    try:
        parser.read(config_file())
    except configparser.Error:
        return DEFAULT_API_URL
    return parser.get("api", "api_url", fallback=DEFAULT_API_URL) or DEFAULT_API_URL


def reachability_problem(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """An HTTPS HEAD of the API URL within `timeout` seconds; why it failed, or None. Any HTTP answer
    (even an error status) means the service is reachable. A TCP connect alone is not enough: proxies
    and captive networks accept connections they cannot complete. Honors HTTPS_PROXY as the client does.

    Without it an offline machine waits out the client's retries (~50 s) and ends in a traceback."""
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("http", "https"):
        return f"the AI Hub API URL {url!r} names no http(s) host"
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # the server answered
    except (TimeoutError, socket.timeout):
        return f"cannot reach Qualcomm AI Hub at {where}: no answer within {timeout:g} s"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"cannot reach Qualcomm AI Hub at {where}: no answer within {timeout:g} s"
        return f"cannot reach Qualcomm AI Hub at {where}: {getattr(reason, 'strerror', None) or reason}"
    except OSError as exc:  # TLS failures, resets
        return f"cannot reach Qualcomm AI Hub at {where}: {exc}"
    return None


def preflight(probe_timeout: float = PROBE_TIMEOUT_S) -> None:
    """Client installed, then a token, then the API reachable: the first that fails raises, with its fix."""
    problem = client_problem()
    if problem:
        raise MissingTool(problem, install_hint())
    problem = token_problem()
    if problem:
        raise MissingTool(problem, NO_TOKEN_FIX)
    url = api_url()
    problem = reachability_problem(url, probe_timeout)
    if problem:
        raise Unreachable(problem, f"check the network (and HTTPS_PROXY) from this machine; {url} must answer, "
                                   f"or set api_url in {config_file()}")


def client():
    """An authenticated qai_hub client, or an error naming what is missing and the fix."""
    preflight()
    import qai_hub as hub

    token = os.environ.get(TOKEN_ENV)
    if token:
        return hub.Client(config=hub.ClientConfig(api_token=token, api_url=api_url(), web_url=api_url()))
    return hub.Client()  # reads client.ini (or QAIHUB_CLIENT_INI)


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
    import qai_hub as hub

    try:
        return _submit(hub, hub_client, artifact, qdq, device_name, wait)
    except OSError as exc:  # requests' errors are OSErrors: the network went away mid-run
        raise Unreachable(f"Qualcomm AI Hub request failed: {type(exc).__name__}: {str(exc)[:500]}",
                          f"rerun when the network is back; submitted jobs stay listed at {api_url()}/jobs/") from exc
    except hub.Error as exc:  # UserError / InternalError / RateLimitedError: the service's own answer
        raise BackendError(f"Qualcomm AI Hub refused the request: {type(exc).__name__}: {str(exc)[:800]}",
                           f"see {api_url()}/jobs/ for the job's log") from exc


def _submit(hub, hub_client, artifact: dict, qdq: Path, device_name: str, wait: bool) -> dict:
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


def _us_to_ms(summary: dict, key: str, what: str):
    from edgevlm.device_tests.devices.base import unavailable

    value = summary.get(key)
    return value / 1000 if value is not None else unavailable(f"AI Hub's profile has no {what} ({key})")


NO_POWER = "Qualcomm AI Hub does not measure power"


def aihub_vision_entry(profile: dict, artifact: dict, device_name: str) -> dict:
    """AI Hub's profile (`download_profile()`: microseconds and bytes) -> the bench/2 vision result.

    cold_ms is the first load on the device (AI Hub's first_load_time: the QNN context created from
    the binary), load_ms a later load (warm_load_time), compile_ms the on-device compile; warm is the
    spread of every timed inference (all_inference_times, or the one estimate of older profiles).
    AI Hub measures no power and does not say how many untimed runs it makes first."""
    from edgevlm.device_tests.devices.base import unavailable as _unavailable

    summary = profile["execution_summary"]
    times_ms = [t / 1000 for t in (summary.get("all_inference_times") or [summary["estimated_inference_time"]])]
    stats = timing_summary(times_ms, warmup=0)
    warm = {"runs": stats["runs"],
            "warmup": _unavailable("AI Hub does not report the untimed runs before its timed inferences"),
            "median_ms": stats["median_ms"], "p90_ms": stats["p90_ms"], "min_ms": stats["min_ms"],
            "max_ms": max(times_ms), "mean_ms": stats["mean_ms"],
            "std_ms": statistics.stdev(times_ms) if len(times_ms) > 1 else _unavailable("one timed inference")}
    peak = summary.get("estimated_inference_peak_memory")
    if not peak and summary.get("inference_memory_peak_range"):
        peak = summary["inference_memory_peak_range"][1]
    units: dict[str, int] = {}
    for layer in profile.get("execution_detail", []):
        units[layer["compute_unit"]] = units.get(layer["compute_unit"], 0) + 1
    return {"part": "vision", "runtime": f"aihub-qnn:{artifact['precision']}", "artifact": artifact["file"],
            "sha256": artifact["sha256"], "status": "ok", "emulated": False, "device_name": device_name,
            "compile_ms": _us_to_ms(summary, "compile_time", "on-device compile time"),
            "load_ms": _us_to_ms(summary, "warm_load_time", "warm load time"),
            "cold_ms": _us_to_ms(summary, "first_load_time", "first load time"),
            "metrics": warm,
            "peak_memory_bytes": peak or _unavailable("AI Hub's profile has no inference peak memory"),
            "compute_units": units or _unavailable("AI Hub's profile has no per-layer detail")}
