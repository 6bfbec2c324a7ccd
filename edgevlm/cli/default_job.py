"""`edgevlm` with no command: the main job, on the embedded default model (edgevlm-tiny).

Steps, each named in the error if it fails (with a fix; exit codes as every command's):
summary (the checkpoint, from its headers) -> export (MAIN_RECIPE, into the edgevlm home) -> verify
(checksums, I/O contracts, numerics against the eager model) -> held-out (HELDOUT_SAMPLES questions
of the synthetic-VQA held-out set, answered by the eager model, the vision artifact beside the eager
decoder, the decoder artifact beside the eager vision tower, and the artifacts alone) -> demo (the
demo scene's questions, artifacts beside eager). One table: artifact, size, parity, accuracy, time.

The export is reused across runs: it lives in <EDGEVLM_HOME>/main-job/<key>, the key being the
sha256 of the checkpoint's files, the recipe and the edgevlm version, so a changed checkpoint
(edgevlm-tiny is retrained from time to time) or recipe gets a new export. A reused export is
verified again (every file's sha256 against its manifest, then the numerics) before it is used; one
that fails is exported again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import sys
import time
from pathlib import Path

from edgevlm import defaults
from edgevlm.errors import EdgeVLMError, EnvironmentProblem, GateFailed

HELDOUT_SAMPLES = 12
MAX_NEW_TOKENS = 8
EXPORT_DIR = "main-job"


def main_recipe(model_dir: Path):
    """The built-in `ort` recipe cut to what the main job needs on a laptop CPU in seconds: the fp32
    ONNX vision encoder (ORT CPU EP) and the INT4 (MatMulNBits) decoder with its INT4 KV cache,
    round-to-nearest weights (AWQ's calibration set costs more time than the job has), a 512-token
    cache, and as many patches per slice as the largest slice of the images the job encodes
    (verification set, held-out questions, demo scene): 64 for edgevlm-tiny, not the default 1120."""
    from edgevlm.calibration.oracle_eval import heldout
    from edgevlm.calibration.synthetic import verification_images
    from edgevlm.config import MiniCPMVConfig
    from edgevlm.export.host import largest_slice, preprocessing_block
    from edgevlm.export.recipes import load_recipe
    from edgevlm.safety import read_processor_config

    processor = model_dir / "preprocessor_config.json"
    pre = preprocessing_block(MiniCPMVConfig.from_file(model_dir / "config.json"),
                              read_processor_config(processor) if processor.is_file() else {})
    images = [image for _, image in verification_images()] + [s.image() for s in heldout(HELDOUT_SAMPLES)]
    images.append(defaults.demo_questions()[0])
    base = load_recipe("ort")
    vision = next(v for v in base.vision if v.precision == "fp32")
    return dataclasses.replace(
        base, name="main-job", description="the default job's recipe: ort, fp32 vision + INT4 decoder (RTN)",
        vision=(dataclasses.replace(vision, max_patches=largest_slice(pre, images)),),
        decoder=(dataclasses.replace(base.decoder[0], weight_calibration="rtn", max_seq_len=512),))


@contextlib.contextmanager
def step(name: str, fix: str):
    """Name the step in whatever it raises: an EdgeVLMError or OSError keeps its exit code and gets
    the step's name (and `fix` when it has none); anything else is a bug, reported as such by the
    caller (exit 70, traceback) after a line naming the step."""
    from edgevlm.cli.exit_codes import _OS_FIXES, describe_os_error

    try:
        yield
    except EdgeVLMError as err:
        raise type(err)(f"main job, step {name!r}: {err.problem}", err.fix or fix) from err
    except OSError as err:
        raise EnvironmentProblem(f"main job, step {name!r}: {describe_os_error(err)}",
                                 _OS_FIXES.get(err.errno, fix)) from err
    except Exception:
        print(f"edgevlm: the main job failed in step {name!r}", file=sys.stderr)
        raise


def export_key(model_dir: Path, recipe) -> str:
    """sha256 of the checkpoint's files (names and bytes), the recipe and the edgevlm version."""
    from edgevlm.cli.main import edgevlm_version

    digest = hashlib.sha256(f"{edgevlm_version()}\n{recipe!r}\n".encode())
    for path in sorted(p for p in Path(model_dir).iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def export_and_verify(model_dir: Path, recipe) -> tuple[Path, list, dict]:
    """(export folder, verify results, what happened: reused / seconds)."""
    from edgevlm.export.driver import export_model
    from edgevlm.export.host import check_max_patches
    from edgevlm.export.verify import verify_artifacts
    from edgevlm.third_party import quiet_loggers

    out = defaults.home() / EXPORT_DIR / export_key(model_dir, recipe)[:16]
    info = {"reused": False, "export_s": 0.0}
    if (out / "manifest.json").is_file():
        with step("verify", f"delete {out} and run `edgevlm` again"):
            start = time.perf_counter()
            try:
                results = verify_artifacts(out)
                problem = _failures(results)
            except EdgeVLMError as err:  # e.g. a damaged manifest: export again, as for a failed check
                problem = err.problem
            info["verify_s"] = time.perf_counter() - start
        if not problem:
            info["reused"] = True
            return out, results, info
        print(f"note: the saved export {out} failed verification ({problem}); exporting again", file=sys.stderr)
    with step("export", "free disk space, or set $EDGEVLM_HOME to a writable folder with room for about 20 MB, "
                        "and run `edgevlm` again (`edgevlm --debug` adds the traceback)"):
        start = time.perf_counter()
        check_max_patches(model_dir, recipe)
        print(f"[edgevlm] exporting {model_dir.name} with recipe {recipe.name} to {out} ...", file=sys.stderr,
              flush=True)
        with quiet_loggers("onnx_ir", "onnxscript", level=logging.WARNING):  # their INFO lines: hundreds
            export_model(model_dir, recipe, out, overwrite=True)
        info["export_s"] = time.perf_counter() - start
    with step("verify", f"run `edgevlm verify {out}` for every check's detail"):
        start = time.perf_counter()
        results = verify_artifacts(out)
        info["verify_s"] = time.perf_counter() - start
    if _failures(results):
        raise GateFailed(f"main job, step 'verify': the fresh export {out} failed verification: {_failures(results)}",
                         f"run `edgevlm verify {out}` for every check's detail")
    return out, results, info


def _failures(results) -> str:
    from edgevlm.export.verify import FAIL

    return "; ".join(f"{r.artifact} {r.check}: {r.detail}" for r in results if r.status == FAIL)


def file_bytes(root: Path, artifact: dict) -> int:
    """An artifact's bytes on disk with the files that ship with it (an ORT decoder's embedding model)."""
    names = [artifact["file"]] + [e["file"] for e in artifact.get("extra_files", [])]
    return sum((root / n).stat().st_size for n in names if (root / n).suffix not in (".cpp", ".h"))


def parity(results, artifact: dict) -> str:
    """The verify numerics of one artifact, in a few words."""
    row = next((r for r in results if r.artifact == artifact["file"] and r.check == "numerics"), None)
    if row is None or row.status != "pass":
        return f"verify: {row.status if row else 'no numerics check'}"
    m = row.metrics.get("overall", row.metrics)  # a vision artifact's metrics are per case and overall
    return f"SQNR {m['sqnr_db']:.1f} dB" if "sqnr_db" in m else row.detail


def score(pipe, samples) -> dict:
    """Held-out answers of one pipeline: accuracy, the answers (to compare with eager), seconds."""
    from edgevlm.calibration.oracle_eval import normalise

    start = time.perf_counter()
    answers = [pipe.generate([s.image()], s.question, max_new_tokens=MAX_NEW_TOKENS).text for s in samples]
    right = sum(normalise(a) == normalise(s.answer) for a, s in zip(answers, samples))
    return {"answers": answers, "right": right, "seconds": time.perf_counter() - start}


def default_job(args) -> int:
    from edgevlm.checkpoint.loader import load_model
    from edgevlm.cli.commands import print_summary
    from edgevlm.summary import inspect_checkpoint

    with step("summary", "reinstall edgevlm (the embedded model is damaged) or check $EDGEVLM_HOME"):
        model_dir = defaults.ensure_default_model()
        summary = inspect_checkpoint(model_dir)
        print_summary(summary)
    trained = model_dir == defaults.oracle_model_dir()
    with step("summary", "reinstall edgevlm (the embedded model is damaged) or check $EDGEVLM_HOME"):
        recipe = main_recipe(model_dir)
    out, results, info = export_and_verify(model_dir, recipe)
    with step("held-out", f"run `edgevlm run {out} --image IMAGE --prompt QUESTION` to see the artifacts fail"):
        loaded = load_model(model_dir)
        rows, runner = heldout_rows(loaded, model_dir, out, results, summary["weights"]["dtypes"])
    with step("demo", f"run `edgevlm run {out} --image IMAGE --prompt QUESTION` to see the artifacts fail"):
        demo = demo_answers(loaded, runner)
    print_table(rows, trained)
    how = (f"reused: same checkpoint and recipe, verified again (checksums, numerics) in {info['verify_s']:.1f} s"
           if info["reused"] else f"exported in {info['export_s']:.1f} s, verified in {info['verify_s']:.1f} s")
    print(f"artifacts: {out} (recipe {recipe.name}; {how})")
    print_demo(demo, trained)
    print(f"note: {defaults.DEFAULT_MODEL_NOTE if trained else defaults.GENERATED_MODEL_NOTE}")
    return 0


def heldout_rows(loaded, model_dir: Path, out: Path, results, dtypes: dict):
    """Table rows: eager, the vision artifact (eager decoder), the decoder artifact (eager vision),
    the artifacts alone; each scored on the same held-out questions."""
    from edgevlm.calibration.oracle_eval import heldout
    from edgevlm.calibration.quality import pipeline
    from edgevlm.export.decoder.session import open_decoder
    from edgevlm.checkpoint.loader import weight_files
    from edgevlm.export.run import ArtifactRunner

    samples = heldout(HELDOUT_SAMPLES)
    runner = ArtifactRunner(out)  # checks the sha256 of what it loads
    vision_art, decoder_art = runner.vision, runner.decoder
    weights = sum((model_dir / name).stat().st_size for name in weight_files(model_dir))
    eager = score(pipeline(loaded), samples)
    vision = score(pipeline(loaded, vision_fn=runner.vision_embeds, vision_name=vision_art["file"]), samples)
    decoder = score(pipeline(loaded, open_decoder(out, decoder_art), max_seq_len=decoder_art["kv_cache"]["max_seq_len"]),
                    samples)
    both = score(runner, samples)
    same = sum(a == b for a, b in zip(eager["answers"], both["answers"]))
    rows = [
        (f"eager PyTorch (fp32 compute, {'/'.join(d.lower() for d in dtypes)} weights)", weights, "reference", eager),
        (f"vision  {vision_art['file']}", file_bytes(out, vision_art), parity(results, vision_art), vision),
        (f"decoder {decoder_art['file']}", file_bytes(out, decoder_art), parity(results, decoder_art), decoder),
        ("end to end (vision + decoder artifacts)", file_bytes(out, vision_art) + file_bytes(out, decoder_art),
         f"{same}/{len(samples)} answers = eager", both),
    ]
    return rows, runner


def demo_answers(loaded, runner) -> list[dict]:
    from edgevlm.calibration.oracle_eval import eager_generate_fn

    image, questions = defaults.demo_questions()
    eager = eager_generate_fn(loaded, MAX_NEW_TOKENS)
    return [{"question": q, "expected": a, "eager": eager(image, q),
             "artifacts": runner.generate([image], q, max_new_tokens=MAX_NEW_TOKENS).text} for q, a in questions]


def print_table(rows, trained: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgevlm.cli.export_summary import human_bytes

    table = Table(title=f"edgevlm-tiny: eager model and exported artifacts, {HELDOUT_SAMPLES} held-out questions")
    for name, justify in (("artifact", "left"), ("size", "right"), ("parity (verify)", "left"),
                          ("held-out accuracy", "right"), ("time", "right")):
        table.add_column(name, justify=justify, no_wrap=name == "artifact")
    for name, size, match, result in rows:
        n = HELDOUT_SAMPLES
        accuracy = f"{result['right']}/{n} ({100 * result['right'] / n:.0f}%)" if trained else "- (random weights)"
        table.add_row(name, "-" if size is None else human_bytes(size), match, accuracy,
                      f"{result['seconds']:.1f} s ({1000 * result['seconds'] / n:.0f} ms/q)")
    Console(width=max(Console().width, 150)).print(table)


def print_demo(demo: list[dict], trained: bool) -> None:
    from edgevlm.calibration.oracle_eval import normalise

    def mark(text, expected):
        return ("right" if normalise(text) == normalise(expected) else "wrong") if trained else "-"

    image, _ = defaults.demo_questions()
    print(f"demo scene {image.size[0]}x{image.size[1]}:")
    for d in demo:
        print(f"Q: {d['question']}\n   eager: {d['eager']!r} ({mark(d['eager'], d['expected'])})   "
              f"artifacts: {d['artifacts']!r} ({mark(d['artifacts'], d['expected'])})   "
              f"correct answer: {d['expected']!r}")
