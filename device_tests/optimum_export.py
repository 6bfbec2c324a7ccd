"""The peer in the decoder benchmark: an optimum-executorch XNNPACK export of the same text backbone.

optimum-executorch pins a transformers release of its own, so it lives in its own virtual
environment ($EDGEVLM_HOME/optimum-venv), made only when asked for (`bench-decoder --with-optimum`). That venv sees this one's site-packages
through a .pth file placed last on its path: torch 2.13.0 (CPU) and executorch 1.5.1 are reused,
nothing pulls a CUDA torch, and the venv's own transformers takes precedence. Our checkpoint's
LLM is written as a local Hugging Face Qwen2/Llama/Qwen3 directory and exported with `optimum-cli
export executorch`; the resulting .pte is timed with ExecuTorch's runtime in our venv.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path


def default_venv() -> Path:
    from edgevlm.defaults import home

    return home() / "optimum-venv"

PINS = ("optimum-executorch==1.1.0", "torch==2.13.0", "executorch==1.5.1")


def ensure_venv(venv: Path) -> str | None:
    """Create the venv and install optimum-executorch; None on success, else the exact pip error."""
    cli = venv / "bin" / "optimum-cli"
    if cli.exists():
        return None
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
        purelib = next(Path(venv, "lib").glob("python3*/site-packages"))
        # last on the path: the venv's own packages (transformers) win, torch/executorch come from here
        (purelib / "zz_edgevlm_base.pth").write_text(site.getsitepackages()[0] + "\n")
        proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PINS], capture_output=True, text=True)
    except (subprocess.CalledProcessError, StopIteration, OSError) as exc:
        return f"could not create {venv}: {exc}"
    if proc.returncode:
        return f"pip install {' '.join(PINS)} failed: {proc.stderr.strip()[-1500:]}"
    return None


def write_hf_llm(loaded, out: Path) -> Path:
    """The checkpoint's LLM as a local Hugging Face causal-LM directory (config + safetensors)."""
    if not (out / "config.json").exists():
        loaded.model.llm.save_pretrained(out)
    return out


def export(loaded, work: Path, max_seq_len: int, weights: str, group_size: int, venv: Path) -> dict:
    """{'path': .pte, 'versions': {...}} or {'reason': why it could not be built}."""
    reason = ensure_venv(venv)
    if reason:
        return {"reason": reason}
    out = work / f"optimum.{weights}-g{group_size}.s{max_seq_len}"
    pte = out / "model.pte"
    record = out / "edgevlm-source.json"
    wanted = {"model": str(loaded.path), "max_seq_len": max_seq_len, "weights": weights, "group_size": group_size}
    if pte.exists() and record.exists() and json.loads(record.read_text()) == wanted:
        return {"path": str(pte), "versions": _versions(venv)}
    hf = write_hf_llm(loaded, work / "hf-llm")
    cmd = [str(venv / "bin" / "optimum-cli"), "export", "executorch", "--model", str(hf), "--task", "text-generation",
           "--recipe", "xnnpack", "--use_custom_sdpa", "--use_custom_kv_cache", "--qlinear", weights,
           "--qlinear_group_size", str(group_size), "--max_seq_len", str(max_seq_len), "--output_dir", str(out)]
    print("exporting with optimum-executorch ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode or not pte.exists():
        return {"reason": f"optimum-cli export failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}"}
    record.write_text(json.dumps(wanted))
    return {"path": str(pte), "versions": _versions(venv)}


def _versions(venv: Path) -> dict:
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "('optimum-executorch', 'optimum', 'transformers', 'torch', 'executorch')}))")
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}
