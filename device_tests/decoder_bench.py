"""Host benchmark of the text decoder: eager PyTorch, our .pte with an fp32 and an INT4 KV cache, and an
optimum-executorch XNNPACK 8da4w export of the same backbone, side by side in one run.

Per runtime (each in its own process: decoder_worker.py): prefill tokens/s per prompt length, time to
first token, decode tokens/s per context, peak RSS; per artifact its size and the KV bytes per token;
per decode context the roofline (bytes a step must read / host read bandwidth measured in this run).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from edgevlm.backends.executorch_decoder import ExecuTorchDecoderBackend
from edgevlm.device_tests import optimum_export
from edgevlm.device_tests.devices.base import unavailable
from edgevlm.device_tests.devices.host import host_thermal
from edgevlm.device_tests.host_bench import host_report
from edgevlm.device_tests.roofline import add_rooflines, eager_weight_bytes, read_bandwidth, weight_bytes_per_token
from edgevlm.device_tests.schema import validate_bench
from edgevlm.export.decoder import pte_names
from edgevlm.export.decoder.kv_cache import KVCacheSpec
from edgevlm.export.decoder.pte import DecoderPteSpec, export_pte
from edgevlm.export.decoder.static_attention import NAME as STATIC
from edgevlm.export.manifest import sha256_path


@dataclasses.dataclass(frozen=True)
class BenchPlan:
    prompts: tuple[int, ...] = (128, 1024)
    contexts: tuple[int, ...] = (128, 1024, 4096)
    weights: str = "8da4w"
    group_size: int = 32
    kv_group_size: int = 32
    attention: str = ExecuTorchDecoderBackend.support.default_attention  # the .pte attention strategy
    prefill_runs: int = 2
    prefill_warmup: int = 1
    decode_runs: int = 8
    decode_warmup: int = 2
    rounds: int = 2  # round-robin repeats of every runtime; each keeps its fastest round
    optimum: bool = False  # opt-in: the peer needs its own venv (device_tests/optimum_export.py)
    eager: bool = True
    caches: tuple[str, ...] = ("fp32", "int4")  # our .pte cache formats to compare
    seq_len: int | None = None  # cache length of the exports (default: the longest prompt or context)

    @property
    def max_seq_len(self) -> int:
        return max(self.seq_len or 0, *self.prompts, *self.contexts)


def our_caches(plan: BenchPlan) -> dict[str, KVCacheSpec]:
    specs = {"fp32": KVCacheSpec("fp32"), "fp16": KVCacheSpec("fp16"),
             "int8": KVCacheSpec("int8", plan.kv_group_size, rotate_keys=True),
             "int4": KVCacheSpec("int4", plan.kv_group_size, rotate_keys=True)}
    return {name: specs[name] for name in plan.caches}


def export_code_fingerprint() -> str:
    """Hash of the code that shapes a decoder .pte, so a reused export is one this code would write."""
    import hashlib

    from edgevlm.export.decoder import int4_attention

    digest = hashlib.sha256()
    modules = sorted(Path(int4_attention.__file__).parent.glob("*.py"))  # the whole decoder package
    for path in modules + list(int4_attention.KERNEL_FILES):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def export_ours(loaded, plan: BenchPlan, work: Path) -> dict[str, dict]:
    """Our .pte per cache format (reused from `work` when its recorded spec matches)."""
    out = {}
    work.mkdir(parents=True, exist_ok=True)
    for name, cache in our_caches(plan).items():
        spec = DecoderPteSpec(max_seq_len=plan.max_seq_len, weights=plan.weights, group_size=plan.group_size,
                              cache=cache, attention=plan.attention)
        path = work / f"decoder.{plan.weights}.kv-{name}.{plan.attention}.s{plan.max_seq_len}.pte"
        record = path.with_suffix(".json")
        wanted = {"spec": repr(spec), "model": str(loaded.path), "code": export_code_fingerprint()}
        if not _reusable(path, record, wanted):
            print(f"exporting {path.name} ...", file=sys.stderr, flush=True)
            export_pte(loaded, spec, path, runner="multimodal")
            record.write_text(json.dumps(wanted | {"sha256": sha256_path(path)}))
        out[name] = {"path": path, "spec": spec}
    return out


def _reusable(path: Path, record: Path, wanted: dict) -> bool:
    """A reused .pte must be the one this spec and code wrote: its bytes still match the sha256
    recorded beside it (a changed file is re-exported, never timed or loaded)."""
    if not (path.exists() and record.exists()):
        return False
    try:
        saved = json.loads(record.read_text())
    except ValueError:
        return False
    return isinstance(saved, dict) and {k: v for k, v in saved.items() if k != "sha256"} == wanted \
        and saved.get("sha256") == sha256_path(path)


def best_round(measurements: list[dict]) -> dict:
    """One worker result from several rounds: per prompt length / context, the round with the lowest
    median (the least disturbed by other load); every round's medians are kept under `rounds`."""
    best = dict(min(measurements, key=lambda m: m["ttft_ms"]))
    for kind in ("prefill", "decode"):
        best[kind] = {key: min((m[kind][key] for m in measurements), key=lambda t: t["median_ms"])
                      for key in measurements[0][kind]}
    best["peak_rss_mib"] = max(m["peak_rss_mib"] for m in measurements)
    best["rounds"] = [{kind: {k: t["median_ms"] for k, t in m[kind].items()} for kind in ("prefill", "decode")}
                      for m in measurements]
    return best


def release_memory() -> None:
    """Return freed heap to the OS: after exporting a 1.5B decoder this process held ~10 GB of freed
    but unreturned memory, and the optimum-executorch export beside it was OOM-killed on 24 GB."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc only; elsewhere the memory stays reusable in-process
    except (OSError, AttributeError):
        pass


def run_worker(job: dict, timeout: float = 3600) -> dict:
    """Run one runtime in a fresh process (its own peak RSS); returns its JSON or raises with stderr."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    env = os.environ.copy()
    if job["runner"].startswith("pte"):
        # A .pte runs on ExecuTorch's thread pool, but kernels built against ATen (the pip wheel's
        # llama::custom_sdpa) and torch's own copies of the logits wake torch's OpenMP threads, which
        # then spin through the next step on the same cores as XNNPACK (0.5B on 2 cores: INT4-cache
        # decode 12.5 -> 8.0 ms, fp32-cache 8.4 -> 7.7 ms). Passive waiting keeps both pools' work;
        # the worker also times .pte steps with torch on one thread (decoder/pte.torch_on_one_thread).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        proc = subprocess.run([sys.executable, "-m", "edgevlm.device_tests.decoder_worker", f.name],
                              capture_output=True, text=True, timeout=timeout, env=env)
    finally:
        os.unlink(f.name)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"worker for {job['runner']} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def decoder_entry(measured: dict) -> dict:
    """A worker's measurements -> the bench/2 fields of an "ok" decoder result."""
    return {"status": "ok", "decoder": measured, "load_ms": measured["load_ms"],
            "peak_memory_bytes": round(measured["peak_rss_mib"] * 2**20)}


def _job(plan: BenchPlan, llm_cfg, runner: str, **extra) -> dict:
    return {"runner": runner, "prompts": list(plan.prompts), "contexts": list(plan.contexts),
            "prefill_runs": plan.prefill_runs, "prefill_warmup": plan.prefill_warmup,
            "decode_runs": plan.decode_runs, "decode_warmup": plan.decode_warmup,
            "vocab_size": llm_cfg.vocab_size, "hidden_size": llm_cfg.hidden_size} | extra


def bench_decoder(model_dir: Path, work: Path, plan: BenchPlan = BenchPlan(),
                  optimum_venv: Path | None = None) -> dict:
    from edgevlm.checkpoint.loader import load_model

    thermal_before = host_thermal()
    model_dir, work = Path(model_dir), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    loaded = load_model(model_dir)
    cfg = loaded.config.llm
    head_dim = cfg.resolved_head_dim
    embed = loaded.model.llm.get_input_embeddings().weight
    embed_bytes = embed.numel() * 4  # the artifacts keep the table in fp32
    fp32_kv = KVCacheSpec("fp32").bytes_per_token(cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim)
    entries = []  # (result entry, job or None, weight bytes per token, kv bytes per token, kv positions read)

    if plan.eager:
        entries.append(({"part": "decoder", "runtime": "pytorch-eager:fp32 (transformers DynamicCache)", "artifact": None, "sha256": None,
                         "kv_cache": {"format": "fp32", "bytes_per_token": fp32_kv}},
                        _job(plan, cfg, "eager", model=str(model_dir)), eager_weight_bytes(loaded.model.llm), fp32_kv,
                        None))
    for name, art in export_ours(loaded, plan, work).items():
        spec, path = art["spec"], art["path"]
        kv = spec.cache.bytes_per_token(cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim)
        entry = {"part": "decoder", "runtime": f"edgevlm-executorch:{plan.weights}-g{plan.group_size}+kv-{name}"
                            + (f"-g{spec.cache.group_size}" if spec.cache.quantized else "") + f" ({plan.attention})",
                 "artifact": str(path), "sha256": sha256_path(path), "artifact_bytes": path.stat().st_size,
                 "kv_cache": spec.cache.to_dict() | {"bytes_per_token": kv, "attention": plan.attention}}
        # the static mode reads every cache position each step; the custom mode only the context
        positions = plan.max_seq_len if plan.attention == STATIC else None
        entries.append((entry, _job(plan, cfg, "pte-embeds", artifact=str(path)),
                        weight_bytes_per_token(path.stat().st_size, embed_bytes), kv, positions))
    release_memory()  # the exports' freed buffers: the optimum export and the workers need that memory
    if plan.optimum:
        entry = {"part": "decoder", "runtime": f"optimum-executorch:{plan.weights}-g{plan.group_size}+kv-fp32 (custom sdpa, custom kv)",
                 "artifact": None, "sha256": None, "kv_cache": {"format": "fp32", "bytes_per_token": fp32_kv}}
        built = optimum_export.export(loaded, work, plan.max_seq_len, plan.weights, plan.group_size,
                                       optimum_venv or optimum_export.default_venv())
        if built.get("reason"):
            entries.append((entry | {"status": "not run", "reason": built["reason"]}, None, 0, 0, None))
        else:
            path = Path(built["path"])
            entry |= {"artifact": str(path), "sha256": sha256_path(path), "artifact_bytes": path.stat().st_size,
                      "optimum": built.get("versions", {})}
            entries.append((entry, _job(plan, cfg, "pte-tokens", artifact=str(path), positions="range"),
                            weight_bytes_per_token(path.stat().st_size, embed_bytes), fp32_kv, None))

    model_block = {"version": loaded.config.version, "source": str(model_dir), "llm": {
        "arch": cfg.arch, "hidden_size": cfg.hidden_size, "layers": cfg.num_hidden_layers,
        "heads": cfg.num_attention_heads, "kv_heads": cfg.num_key_value_heads, "head_dim": head_dim,
        "vocab_size": cfg.vocab_size, "parameters": sum(p.numel() for p in loaded.model.llm.parameters())}}
    del loaded, embed
    release_memory()  # a 1.5B eager worker needs ~7 GB beside this process
    # Shared hosts drift: the runtimes are timed round-robin `plan.rounds` times and each keeps its
    # fastest round per metric. The read bandwidth is sampled here between workers and by each
    # worker beside every decode timing (roofline.add_rooflines).
    bandwidths = [read_bandwidth()]
    rounds: list[list[dict]] = [[] for _ in entries]
    failures: dict[int, str] = {}
    for round_index in range(plan.rounds):
        for i, (entry, job, _, _, _) in enumerate(entries):
            if job is None or i in failures:
                continue
            print(f"timing {entry['runtime']} (round {round_index + 1}/{plan.rounds}) ...", file=sys.stderr, flush=True)
            try:
                rounds[i].append(run_worker(job))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                failures[i] = str(exc)[-1500:]
            bandwidths.append(read_bandwidth())
    beside = [gb_s for runs in rounds for run in runs for t in run["decode"].values()
              for gb_s in t.get("read_bandwidth_gb_s", [])]
    bandwidth = max(bandwidths, key=lambda b: b["gb_s"]) | {"samples_gb_s": [b["gb_s"] for b in bandwidths],
                                                           "worker_samples_gb_s": beside}
    bandwidth["gb_s"] = max([bandwidth["gb_s"], *beside])
    results = []
    for i, (entry, job, weight_bytes, kv, positions) in enumerate(entries):
        if job is None:
            results.append(entry)
            continue
        if i in failures:
            results.append(entry | {"status": "not run", "reason": failures[i]})
            continue
        measured = best_round(rounds[i])
        for context, timing in measured["decode"].items():
            add_rooflines(timing, weight_bytes + kv * (positions or int(context)), bandwidth["gb_s"])
        results.append(entry | decoder_entry(measured) | {"weight_bytes_per_token": weight_bytes})
    report = host_report("decoder", None, None, thermal_before, results, model=model_block)
    report["device"]["read_bandwidth"] = bandwidth
    report |= {
        "input": {"prompts": list(plan.prompts), "contexts": list(plan.contexts), "max_seq_len": plan.max_seq_len,
                  "weights": plan.weights, "group_size": plan.group_size, "attention": plan.attention},
        "results": results,
    }
    report["comparison"] = compare(report)
    validate_bench(report)
    return report


def _decode_tps(report: dict, prefix: str, match: str = "") -> dict:
    for r in report["results"]:
        if r["runtime"].startswith(prefix) and match in r["runtime"] and r["status"] == "ok":
            return {c: d["tokens_per_s"] for c, d in r["decoder"]["decode"].items()}
    return {}


def compare(report: dict) -> dict:
    """The issue's targets, as ratios (reported, not asserted). Not normalized by the bandwidth beside
    each timing: decode speed is not proportional to it (measured on this host: 0.5B fp32-cache
    126 tok/s at 46 GB/s, optimum 144 tok/s at 77 GB/s), so such a ratio would mislead."""
    fp32, int4 = _decode_tps(report, "edgevlm-", "+kv-fp32 "), _decode_tps(report, "edgevlm-", "+kv-int4")
    optimum = _decode_tps(report, "optimum-executorch")
    out = {"int4_vs_fp32_cache": {c: int4[c] / fp32[c] for c in fp32 if c in int4}}
    if optimum:
        out["ours_fp32_vs_optimum"] = {c: fp32[c] / optimum[c] for c in fp32 if c in optimum}
        out["ours_int4_vs_optimum"] = {c: int4[c] / optimum[c] for c in int4 if c in optimum}
    return out


def bench_manifest_decoders(artifacts_dir: Path, plan: BenchPlan = BenchPlan(decode_runs=5, prefill_runs=1)) -> dict:
    """`edgevlm bench` for the decoder .pte artifacts of a manifest (prompts/contexts clipped to each cache)."""
    from edgevlm.export.manifest import read_manifest

    thermal_before = host_thermal()
    artifacts_dir = Path(artifacts_dir)
    manifest = read_manifest(artifacts_dir)
    bandwidth = read_bandwidth()
    results = []
    for artifact in [a for a in manifest["artifacts"] if a["part"] == "decoder"]:
        entry = {"part": "decoder", "runtime": f"{artifact['target']}:{artifact['precision']}", "artifact": artifact["file"],
                 "sha256": artifact["sha256"], "artifact_bytes": artifact["bytes"], "kv_cache": artifact["kv_cache"]}
        if not artifact["file"].endswith(".pte") or pte_names.TEXT_DECODER not in artifact.get("methods", []):
            results.append(entry | {"status": "not run", "reason": "not an ExecuTorch multimodal decoder .pte "
                                                                 "(this harness times those)"})
            continue
        limit = artifact["kv_cache"]["max_seq_len"]
        prompts = [p for p in plan.prompts if p < limit] or [min(16, limit - 1)]
        contexts = [c for c in plan.contexts if c <= limit] or [limit]
        d = artifact["inputs"][0]["shape"][-1]
        job = _job(dataclasses.replace(plan, prompts=tuple(prompts), contexts=tuple(contexts)), _Dims(
            artifact["outputs"][0]["shape"][-1], d), "pte-embeds", artifact=str(artifacts_dir / artifact["file"]))
        try:
            measured = run_worker(job)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            results.append(entry | {"status": "not run", "reason": str(exc)[-1500:]})
            continue
        embed_bytes = artifact["outputs"][0]["shape"][-1] * d * 4
        static = artifact["kv_cache"].get("attention", STATIC) == STATIC  # reads all max_seq_len positions
        for context, timing in measured["decode"].items():
            add_rooflines(timing, weight_bytes_per_token(artifact["bytes"], embed_bytes) +
                          artifact["kv_cache"]["bytes_per_token"] * (limit if static else int(context)),
                          bandwidth["gb_s"])
        for context in plan.contexts:  # present with the reason, as bench/2 wants
            if context > limit:
                measured["decode"][str(context)] = unavailable(
                    f"context {context} exceeds the program's {limit}-token cache")
        for prompt in plan.prompts:
            if prompt >= limit:
                measured["prefill"][str(prompt)] = unavailable(
                    f"a {prompt}-token prompt leaves no room in the program's {limit}-token cache")
        results.append(entry | decoder_entry(measured))
    report = host_report("decoder", manifest, artifacts_dir, thermal_before, results)
    report["device"]["read_bandwidth"] = bandwidth
    validate_bench(report)
    return report


@dataclasses.dataclass(frozen=True)
class _Dims:
    vocab_size: int
    hidden_size: int
