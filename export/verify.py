"""`edgevlm verify DIR`: check every artifact a manifest lists, reading only the artifact directory.

For each artifact: the checksum, the I/O contract against the manifest, and the numerics of the
verification set (images re-preprocessed on the host, run through the artifact on whatever
runtime this machine has, compared with the eager fp32 reference stored at export time) against
its quality gate. An artifact this machine cannot execute is reported as such, never as passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevlm.backends.base import get_vision_backend
from edgevlm.errors import EdgeVLMError
from edgevlm.export.gates import Gate, compare
from edgevlm.export.manifest import read_manifest, sha256_path
from edgevlm.export.vision import ResamplerSpec, vision_inputs
from edgevlm.progress import progress_bar

PASS, FAIL, NOT_RUN = "pass", "fail", "not run"


@dataclass
class CheckResult:
    artifact: str
    check: str
    status: str
    detail: str = ""
    metrics: dict = field(default_factory=dict)


def verify_artifacts(artifacts_dir: Path, all_slices: bool = False, on_stage=None) -> list[CheckResult]:
    """all_slices: run every verification slice even on slow (emulated) runtimes. on_stage(name,
    record | None): called as each artifact's checks start and end (resources.StageRecorder)."""
    from edgevlm.resources import StageRecorder

    artifacts_dir = Path(artifacts_dir)
    manifest = read_manifest(artifacts_dir)
    results = support_file_checks(artifacts_dir, manifest)  # tokenizer, verification set: checked first
    stages = StageRecorder(on_stage)
    for artifact in manifest["artifacts"]:
        with stages.stage(f"verify {artifact['file']}"):
            results.extend(verify_one(artifacts_dir, manifest, artifact, all_slices))
    if (artifacts_dir / QUALITY_REPORT).is_file():
        results.extend(verify_task_accuracy(artifacts_dir, manifest))
    return results


QUALITY_REPORT = "quality.json"  # written beside the manifest by `edgevlm quality`
SUPPORT_FILES = "manifest.json files"  # the artifact column of the row for the manifest's `files`


def support_file_checks(root: Path, manifest: dict) -> list[CheckResult]:
    """One row for the manifest's `files` (tokenizer and verification set) when all match, one
    failing row per file that does not (manifests from before `files` get none)."""
    entries = manifest.get("files")
    if entries is None:
        return []
    failed = [c for c in (checksum(e["file"], root / e["file"], e["sha256"]) for e in entries) if c.status == FAIL]
    return failed or [CheckResult(SUPPORT_FILES, "checksum", PASS, f"{len(entries)} files (tokenizer, verification)")]


def verify_task_accuracy(root: Path, manifest: dict) -> list[CheckResult]:
    """Re-judge the stored quality report's rows with the manifest's accuracy gates (the gates
    `edgevlm quality` used). A row about a file that has changed since is stale, and fails."""
    import json

    from edgevlm.export.gates import AgreementGate, manifest_accuracy_gates

    report = json.loads((root / QUALITY_REPORT).read_text())
    gates = manifest_accuracy_gates(manifest)  # the ones `edgevlm quality` judged with
    current = {a["file"]: a["sha256"] for a in manifest["artifacts"]}
    checks = []
    for row in report["rows"]:
        if row["status"] == NOT_RUN:
            checks.append(CheckResult(row["artifact"], "task accuracy", NOT_RUN, row["reason"]))
            continue
        files = row["artifact"].split(" + ")
        stale = [f for f, sha in zip(files, row["sha256"].split("+")) if current.get(f) != sha]
        if stale:
            checks.append(CheckResult(row["artifact"], "task accuracy", FAIL,
                                      f"{QUALITY_REPORT} scored other bytes of {', '.join(stale)}; "
                                      "re-run edgevlm quality --reuse"))
            continue
        gate = gates.get(row["component"])
        if gate is None:
            checks.append(CheckResult(row["artifact"], "task accuracy", NOT_RUN,
                                      f"the manifest has no {row['component']} accuracy gate; re-export"))
            continue
        if "same_answers_as_qdq" in row:  # an emulator's subset: judged by agreement with its simulated twin
            gate = AgreementGate(row["component"])
            ok = gate.passes(row["same_answers_as_qdq"], row["samples"])
            agreement = f", {row['same_answers_as_qdq']}/{row['samples']} answers as its QDQ model"
        else:
            ok, agreement = gate.passes(row["drop_points"]), ""
        checks.append(CheckResult(row["artifact"], "task accuracy", PASS if ok else FAIL,
                                  f"{row['component']}: exact match {100 * row['exact_match']:.1f}% vs reference "
                                  f"{100 * row.get('reference_exact_match', report['reference']['exact_match']):.1f}% on "
                                  f"{row['samples']} held-out "
                                  f"samples, drop {row['drop_points']:+.1f} points{agreement} ({gate.describe()})",
                                  {k: row[k] for k in ("exact_match", "drop_points", "answer_perplexity")}))
    return checks


def verify_one(root: Path, manifest: dict, artifact: dict, all_slices: bool = False) -> list[CheckResult]:
    if artifact["part"] == "decoder":
        from edgevlm.export.decoder.verify import verify_decoder

        return verify_decoder(root, artifact)
    name = artifact["file"]
    path = root / name
    if not path.exists():
        return [CheckResult(name, "checksum", FAIL, f"{name} is missing from {root}")]
    checks = [checksum(name, path, artifact["sha256"])]
    for extra in artifact.get("extra_files", []):
        checks.append(checksum(extra["file"], root / extra["file"], extra["sha256"]))
    if any(c.status == FAIL for c in checks):
        return checks  # never run a file that is not the one exported
    backend = get_vision_backend(artifact["target"])
    checks.append(_contract(name, backend, path, artifact))
    reason = backend.runtime_available()
    if reason is not None:
        checks.append(CheckResult(name, "numerics", NOT_RUN, reason))
        return checks
    limit = None if all_slices else backend.verify_slices_per_case
    try:
        checks.append(_numerics(root, manifest, artifact, backend, path, limit))
    except EdgeVLMError:
        raise
    except Exception as e:  # noqa: BLE001 - the runtime refused the inputs the manifest describes
        checks.append(CheckResult(name, "numerics", FAIL, f"the artifact did not run on the manifest's inputs "
                                  f"({type(e).__name__}: {str(e).strip()[:300]})"))
    return checks


def checksum(name: str, path: Path, expected: str) -> CheckResult:
    if not path.exists():
        return CheckResult(name, "checksum", FAIL, "file missing")
    actual = sha256_path(path)
    if actual != expected:
        return CheckResult(name, "checksum", FAIL, f"sha256 {actual[:12]}... != manifest {expected[:12]}...: "
                                                   "the file changed or is corrupt; re-export it")
    return CheckResult(name, "checksum", PASS, actual[:12])


def _contract(name: str, backend, path: Path, artifact: dict) -> CheckResult:
    """Inputs/outputs the artifact declares, compared with the manifest (backends that can read them)."""
    declared = backend.describe_io(path, artifact.get("details", {}))
    expected = {"inputs": artifact["inputs"], "outputs": artifact["outputs"]}
    problems = [f"{kind} {e['name']}: artifact {d} vs manifest {(e['shape'], e['dtype'])}"
                for kind in ("inputs", "outputs") for e in expected[kind]
                for d in [declared[kind].get(e["name"])] if d != (e["shape"], e["dtype"])]
    return CheckResult(name, "io contract", FAIL if problems else PASS, "; ".join(problems) or "names, shapes, dtypes")


def _numerics(root: Path, manifest: dict, artifact: dict, backend, path: Path,
              slices_per_case: int | None = None) -> CheckResult:
    from edgevlm.export.host import manifest_slices
    from edgevlm.preprocess import load_image

    gate = Gate(**artifact["quality_gate"])
    references = np.load(root / manifest["verification"]["reference"])
    pre = manifest["preprocessing"]
    spec = ResamplerSpec.from_preprocessing(pre)
    per_case, refs, outs = {}, [], []
    cases = [(case, *manifest_slices(load_image(root / case["image"]), pre))
             for case in manifest["verification"]["cases"]]
    total = sum(min(len(slices), slices_per_case or len(slices)) for _, slices, _ in cases)
    # emulators take seconds a slice: a bar on a terminal, a count line in CI logs
    with progress_bar(total, f"verify {artifact['file']}", report_every_s=30) as advance:
        for case, slices, sizes in cases:
            got = []
            for i in range(min(len(slices), slices_per_case or len(slices))):
                advance()
                if int(sizes[i].prod()) > artifact["max_patches"]:
                    continue  # beyond this artifact's static shape; reported below
                batch = vision_inputs(slices[i:i + 1], sizes[i:i + 1], artifact["max_patches"], spec,
                                      pre["num_patches_per_side"], batch=artifact["batch"])
                got.append(backend.run(path, batch.arrays, artifact.get("details", {}))[:1])
            ref = references[case["name"]][: len(got)]
            if got and (ref.shape[0] != len(got) or ref.shape[1:] != got[0].shape[1:]):
                return CheckResult(artifact["file"], "numerics", FAIL,
                                   f"{case['name']}: {len(got)} slice output(s) of shape {list(got[0].shape[1:])} "
                                   f"vs the stored reference {list(ref.shape)}: the manifest's preprocessing does "
                                   "not match the export")
            if got:
                out = np.concatenate(got)
                per_case[case["name"]] = compare(ref, out)
                refs.append(ref)
                outs.append(out)
    if not refs:
        return CheckResult(artifact["file"], "numerics", FAIL, "no verification slice fits max_patches")
    overall = compare(np.concatenate(refs), np.concatenate(outs))
    value = overall[gate.metric]
    status = PASS if gate.passes(value) else FAIL
    scope = f"; first {slices_per_case} slice(s) per image, --all-slices for every one" if slices_per_case else ""
    return CheckResult(artifact["file"], "numerics", status,
                       f"{gate.metric}={value:.6g} (gate {gate.describe()}){scope}",
                       {"overall": overall, "cases": per_case, "slices": sum(len(r) for r in refs)})


def worst(results: list[CheckResult]) -> str:
    return FAIL if any(r.status == FAIL for r in results) else PASS

