"""Where one decode step of a decoder .pte goes, from ExecuTorch's own ETDump profile.

`edgevlm profile-decoder --artifact X.pte --context 128` (table: reports/decoder_tables.print_profile) runs decode steps at position context-1
with event tracing on and groups the events: XNNPACK GEMMs, the rest of the XNNPACK delegate calls
(their other ops, runtime reshape/setup and thread-pool dispatch), and the kernels ExecuTorch runs
itself (the cache and attention ops, views, the logits select). The program's instruction list
gives the static counts beside it: delegate calls and portable kernel calls per step.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path


def program_calls(path: Path, method: str) -> dict:
    """Static calls of one method: XNNPACK delegate calls and the kernels ExecuTorch runs itself."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DelegateCall, KernelCall

    plans = {p.name: p for p in deserialize_pte_binary(Path(path).read_bytes()).program.execution_plan}
    if method not in plans:
        raise ValueError(f"{path} has no method {method!r} (it has: {', '.join(sorted(plans))})")
    plan = plans[method]
    instructions = [i.instr_args for chain in plan.chains for i in chain.instructions]
    kernels = Counter(plan.operators[i.op_index].name for i in instructions if isinstance(i, KernelCall))
    return {"delegate_calls": sum(isinstance(i, DelegateCall) for i in instructions),
            "kernel_calls": sum(kernels.values()), "kernels": dict(kernels.most_common())}


def _decoder_method(module) -> tuple[str, list]:
    """(method, example decode inputs) for our text_decoder(embeds, pos) or a text runner's forward(tokens, pos)."""
    import torch

    from edgevlm.export.decoder.pte_names import TEXT_DECODER, TEXT_FORWARD

    names = set(module.method_names())
    if TEXT_DECODER in names:
        hidden = module.method_meta(TEXT_DECODER).input_tensor_meta(0).sizes()[-1]
        return TEXT_DECODER, [torch.randn(1, 1, hidden, generator=torch.Generator().manual_seed(0)) * 0.02]
    if TEXT_FORWARD in names:
        return TEXT_FORWARD, [torch.zeros(1, 1, dtype=torch.long)]
    raise ValueError(f"not a decoder program: methods {sorted(names)} (expected text_decoder or forward)")


def profile_decode(path: Path, context: int, steps: int = 20, warmup: int = 3) -> dict:
    """Mean per-step milliseconds of decode steps at position context-1, grouped (see module doc)."""
    import torch

    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib

    from edgevlm.export.decoder.pte import load_pte_kernels, torch_on_one_thread
    from edgevlm.export.decoder.pte_names import MAX_SEQ_LEN

    path = Path(path)
    load_pte_kernels(path)
    module = portable_lib._load_for_executorch(str(path), enable_etdump=True, debug_buffer_size=0)
    method, inputs = _decoder_method(module)
    if MAX_SEQ_LEN in module.method_names():  # the runner-convention cache length
        limit = int(module.run_method(MAX_SEQ_LEN, ())[0])
        if context > limit:
            raise ValueError(f"context {context} is past the program's cache of {limit} positions; "
                             f"profile at --context {limit} or less")
    position = torch.tensor([context - 1], dtype=torch.long)
    with torch_on_one_thread():  # else torch's spinning OpenMP threads inflate every XNNPACK time
        for _ in range(warmup + steps):
            module.run_method(method, (*inputs, position))
    with tempfile.TemporaryDirectory() as tmp:
        etdump = Path(tmp) / "decode.etdp"
        module.write_etdump_result_to_file(str(etdump))
        frame = Inspector(etdump_path=str(etdump)).to_dataframe()
    frame = frame[frame["event_block_name"] == "Execute"]
    per_event = Counter()  # name -> ms per step (summed over the event's occurrences in a step)
    occurrences = Counter()
    for name, raw in zip(frame["event_name"], frame["raw"]):
        per_event[name] += sum(raw[-steps:]) / steps
        occurrences[name] += 1
    step_ms = per_event.pop("Method::execute")
    delegate_ms, kernels_ms = per_event.pop("DELEGATE_CALL", 0.0), per_event.pop("OPERATOR_CALL", 0.0)
    gemm_ms = sum(ms for name, ms in per_event.items() if "GEMM" in name or "Fully Connected" in name)
    static = program_calls(path, method)
    return {
        "artifact": str(path), "method": method, "context": context, "steps": steps,
        "step_ms": step_ms, "xnnpack_gemm_ms": gemm_ms, "xnnpack_other_ms": delegate_ms - gemm_ms,
        "executorch_kernels_ms": kernels_ms, "outside_calls_ms": step_ms - delegate_ms - kernels_ms,
        "delegate_calls": static["delegate_calls"], "kernel_calls": static["kernel_calls"],
        "top_events": [{"name": name, "occurrences": occurrences[name], "ms": ms}
                       for name, ms in per_event.most_common(12)],
    }
