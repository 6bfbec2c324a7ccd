"""`edgevlm::int4_sdpa` and `edgevlm::int4_update_cache`: attention over, and writes into, a packed
INT4 KV cache.

Without it, a decoder with an INT4 cache (export/decoder/kv_cache.py) dequantizes the cache to float32
before every attention call: each decode step rewrites start_pos + T positions of float keys and
values (8x the bytes of the codes) just to read them once. In an ExecuTorch program the dequantize
ops sitting between `llama::update_cache` and `llama::custom_sdpa` also form a dependency cycle
through the cache for XNNPACK, so its partitions cannot be merged (the decoder falls back to one
delegate per op). This op reads the codes, scales and zeros directly and never materializes the
float cache.

Semantics (the layout of `llama::update_cache` / `llama::custom_sdpa`, sequence-major):
  q float32 [B, T, H, D]: T new tokens at absolute positions start_pos .. start_pos + T - 1;
  k/v codes uint8 [B, S, Hkv, D/2] (element 2j in the low nibble, 2j+1 in the high one),
  k/v scale and zero float16 [B, S, Hkv, D/G]; value = code * scale + zero;
  query t attends to cache positions 0 .. start_pos + t (the cache already holds the new tokens),
  query head h reads kv head h // (H / Hkv); out float32 [B, T, H, D] = softmax(q.k * scale) v.
S may be the full static cache length; positions from start_pos + T on are never read.

`int4_update_cache(value [B, T, Hkv, D] float32, codes, scale, zero, start_pos)` quantizes the new
rows (kv_cache.quantize, bit for bit) and writes them at start_pos in place, as `llama::update_cache`
does for a float cache. As graph ops that quantization was ~20 small ops per cache per layer, and
XNNPACK's partitioner merged some of them with later layers' ops into cyclic partitions.

Two implementations:
- a Python reference registered with torch.library (`register_op`): eager runs and torch.export;
- C++ ExecuTorch kernels (export/kernels/*.cpp), compiled on first use against the executorch
  wheel's headers and libexecutorch.so (`build_kernel_library`) and registered into the ExecuTorch
  kernel registry as `edgevlm::int4_sdpa.out` / `edgevlm::int4_update_cache.out` when loaded
  (`load_kernel_library`). `to_executorch()` rewrites the ops to those `.out` overloads.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from edgevlm.export.decoder import rope_op
from edgevlm.export.kernel_cache import cpu_signature, executorch_root

NAMESPACE = "edgevlm"
OP_NAME = "int4_sdpa"
UPDATE_OP_NAME = "int4_update_cache"
KERNEL_NAMES = (f"{NAMESPACE}::{OP_NAME}.out", f"{NAMESPACE}::{UPDATE_OP_NAME}.out",
                f"{NAMESPACE}::{rope_op.OP_NAME}.out")  # ExecuTorch registry names (rope: built alongside)
KERNEL_DIR = Path(__file__).parent.parent / "kernels"  # export/kernels
SOURCES = (KERNEL_DIR / "int4_sdpa.cpp", KERNEL_DIR / "int4_kv_update.cpp", KERNEL_DIR / "rope.cpp")  # compiled
# what a build needs: hashed into the library's cache key, shipped beside the .pte
KERNEL_FILES = SOURCES + (KERNEL_DIR / "int4_sdpa_blocks.h", KERNEL_DIR / "int4_kv_common.h")
LIBRARY_NAME = "libedgevlm_kernels.so"

_ARGS = ("Tensor q, Tensor k_codes, Tensor k_scale, Tensor k_zero, Tensor v_codes, Tensor v_scale, "
         "Tensor v_zero, SymInt start_pos, float scale")
SCHEMA = f"{OP_NAME}({_ARGS}) -> Tensor"
OUT_SCHEMA = f"{OP_NAME}.out({_ARGS}, *, Tensor(a!) out) -> Tensor(a!)"
_UPDATE_ARGS = "Tensor value, Tensor(a!) codes, Tensor(b!) scale, Tensor(c!) zero, SymInt start_pos"
UPDATE_SCHEMA = f"{UPDATE_OP_NAME}({_UPDATE_ARGS}) -> Tensor"  # returns a dummy [1], as llama::update_cache
UPDATE_OUT_SCHEMA = f"{UPDATE_OP_NAME}.out({_UPDATE_ARGS}, *, Tensor(d!) out) -> Tensor(d!)"

_lock = threading.Lock()
_library: torch.library.Library | None = None  # kept alive: dropping it unregisters the op
_loaded: Path | None = None


# --- torch op -------------------------------------------------------------------------------------

def _require(cond, message: str, op: str = OP_NAME) -> None:
    """Raise ValueError for a concrete failed check; record symbolic ones (export) with torch._check."""
    if isinstance(cond, bool):
        if not cond:
            raise ValueError(f"{NAMESPACE}::{op}: {message}")
    else:
        torch._check(cond, lambda: f"{NAMESPACE}::{op}: {message}")


def _validate(q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start_pos) -> None:
    _require(q.dtype == torch.float32 and q.dim() == 4,
             f"q must be float32 [B, T, H, D], got {q.dtype} with shape {list(q.shape)}")
    b, t, h, d = q.shape
    for name, codes, scale, zero in (("k", k_codes, k_scale, k_zero), ("v", v_codes, v_scale, v_zero)):
        _require(codes.dtype == torch.uint8 and codes.dim() == 4,
                 f"{name}_codes must be uint8 [B, S, Hkv, D/2] (two 4-bit codes per byte), got {codes.dtype} "
                 f"with shape {list(codes.shape)}")
        for kind, param in (("scale", scale), ("zero", zero)):
            _require(param.dtype == torch.float16 and param.dim() == 4,
                     f"{name}_{kind} must be float16 [B, S, Hkv, D/G], got {param.dtype} with shape "
                     f"{list(param.shape)}")
        _require(codes.shape[-1] * 2 == d,
                 f"{name}_codes last dim must be head_dim/2 = {d}/2 (two codes per byte), got {codes.shape[-1]}")
        _require(codes.shape[0] == b, f"{name}_codes batch {codes.shape[0]} != q batch {b}")
        _require(k_codes.shape[1] == codes.shape[1] and k_codes.shape[2] == codes.shape[2],
                 f"k_codes and v_codes must have the same [S, Hkv], got {list(k_codes.shape)} and "
                 f"{list(v_codes.shape)}")
        _require(scale.shape[:3] == codes.shape[:3] and zero.shape == scale.shape,
                 f"{name}_scale and {name}_zero must be [B, S, Hkv, D/G] matching {name}_codes "
                 f"{list(codes.shape)}, got {list(scale.shape)} and {list(zero.shape)}")
    groups = k_scale.shape[-1]
    _require(v_scale.shape[-1] == groups, "k and v must use the same group size")
    _require(groups > 0 and d % groups == 0 and (d // groups) % 2 == 0,
             f"head_dim {d} must split into {groups} groups of an even size")
    hkv = k_codes.shape[2]
    _require(hkv > 0 and h % hkv == 0, f"query heads {h} must be a multiple of kv heads {hkv}")
    if isinstance(start_pos, int):  # an unbacked SymInt during export: the kernel checks it at run time
        _require(0 <= start_pos and start_pos + t <= k_codes.shape[1],
                 f"start_pos {start_pos} + {t} new tokens exceeds the cache length {k_codes.shape[1]}")


def int4_sdpa_reference(q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start_pos: int,
                        scale: float) -> torch.Tensor:
    """Dequantize positions 0 .. start_pos+T-1 (kv_cache.dequantize), then causal grouped-query attention."""
    from edgevlm.export.decoder.kv_cache import dequantize

    _validate(q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start_pos)
    _, t, h, d = q.shape
    end = int(start_pos) + t
    group = d // k_scale.shape[-1]
    rep = h // k_codes.shape[2]

    def load(codes, s, z):  # [B, end, Hkv, D] -> [B, H, end, D]
        x = dequantize(codes[:, :end], s[:, :end], z[:, :end], 4, group)
        return x.transpose(1, 2).repeat_interleave(rep, dim=1)

    k, v = load(k_codes, k_scale, k_zero), load(v_codes, v_scale, v_zero)
    scores = (q.transpose(1, 2) @ k.transpose(-1, -2)) * scale  # [B, H, T, end]
    allowed = torch.arange(end) <= (start_pos + torch.arange(t))[:, None]  # query t sees 0 .. start_pos+t
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).contiguous()


def _int4_sdpa_out(q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start_pos, scale, *, out):
    result = int4_sdpa_reference(q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start_pos, scale)
    out.resize_(result.shape)
    return out.copy_(result)


def _int4_sdpa_fake(q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start_pos, scale):
    _validate(q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start_pos)
    return torch.empty_like(q)


def _int4_sdpa_out_fake(q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start_pos, scale, *, out):
    _validate(q, k_codes, k_scale, k_zero, v_codes, v_scale, v_zero, start_pos)
    return out


def _validate_update(value, codes, scale, zero, start_pos) -> None:
    def require(cond, message):
        _require(cond, message, UPDATE_OP_NAME)

    require(value.dtype == torch.float32 and value.dim() == 4,
            f"value must be float32 [B, T, Hkv, D], got {value.dtype} with shape {list(value.shape)}")
    require(codes.dtype == torch.uint8 and codes.dim() == 4 and codes.shape[-1] * 2 == value.shape[-1],
            f"codes must be uint8 [B, S, Hkv, D/2] for D={value.shape[-1]}, got {codes.dtype} {list(codes.shape)}")
    require(scale.dtype == torch.float16 and zero.dtype == torch.float16 and scale.shape == zero.shape,
            f"scale and zero must be float16 [B, S, Hkv, D/G], got {scale.dtype} {list(scale.shape)} and "
            f"{zero.dtype} {list(zero.shape)}")
    if not isinstance(start_pos, torch.SymInt):
        require(0 <= start_pos and start_pos + value.shape[1] <= codes.shape[1],
                f"start_pos {start_pos} + {value.shape[1]} rows exceeds the cache length {codes.shape[1]}")


def int4_update_cache_reference(value, codes, scale, zero, start_pos: int) -> torch.Tensor:
    from edgevlm.export.decoder.kv_cache import quantize

    _validate_update(value, codes, scale, zero, start_pos)
    new_codes, new_scale, new_zero = quantize(value, 4, value.shape[-1] // scale.shape[-1])
    t = value.shape[1]
    codes[:, start_pos:start_pos + t] = new_codes
    scale[:, start_pos:start_pos + t] = new_scale
    zero[:, start_pos:start_pos + t] = new_zero
    return value.new_empty(1)


def _int4_update_cache_out(value, codes, scale, zero, start_pos, *, out):
    int4_update_cache_reference(value, codes, scale, zero, start_pos)
    return out


def _int4_update_cache_fake(value, codes, scale, zero, start_pos):
    _validate_update(value, codes, scale, zero, start_pos)
    return value.new_empty(1)


def _op_defined() -> bool:
    try:
        torch.ops.edgevlm.int4_sdpa.out  # noqa: B018
        torch.ops.edgevlm.int4_update_cache.out  # noqa: B018
        torch.ops.edgevlm.rope.out  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


def _define(lib: torch.library.Library, name: str, schema: str, out_schema: str, reference, out, fake,
            out_fake) -> None:
    """One op and its .out overload: schemas, CPU (Python reference) kernels, fake kernels for export."""
    lib.define(schema)
    lib.define(out_schema)
    lib.impl(name, reference, "CPU")
    lib.impl(f"{name}.out", out, "CPU")
    torch.library.register_fake(f"{NAMESPACE}::{name}", fake, lib=lib)
    torch.library.register_fake(f"{NAMESPACE}::{name}.out", out_fake, lib=lib)


def register_op() -> None:
    """Define edgevlm::int4_sdpa, edgevlm::int4_update_cache, edgevlm::rope (export/decoder/rope_op.py) and
    their .out overloads (Python references + fake kernels). Idempotent."""
    global _library
    with _lock:
        if _library is not None or _op_defined():
            return
        lib = torch.library.Library(NAMESPACE, "FRAGMENT")  # FRAGMENT: other edgevlm ops may exist
        _define(lib, OP_NAME, SCHEMA, OUT_SCHEMA, int4_sdpa_reference, _int4_sdpa_out, _int4_sdpa_fake,
                _int4_sdpa_out_fake)
        _define(lib, UPDATE_OP_NAME, UPDATE_SCHEMA, UPDATE_OUT_SCHEMA, int4_update_cache_reference,
                _int4_update_cache_out, _int4_update_cache_fake,
                lambda value, codes, scale, zero, start_pos, *, out: out)
        _define(lib, rope_op.OP_NAME, rope_op.SCHEMA, rope_op.OUT_SCHEMA, rope_op.rope_reference,
                rope_op.rope_out, rope_op.rope_fake, rope_op.rope_out_fake)
        _library = lib


# --- ExecuTorch kernel ----------------------------------------------------------------------------

def compile_command(output: Path) -> list[str]:
    """The g++ command line that builds the kernel library (matching the wheel's own build)."""
    root = executorch_root()
    lib = root / "lib"
    return [
        os.environ.get("EDGEVLM_CXX", "g++"),
        "-O3", "-march=native", "-std=c++17", "-shared", "-fPIC",
        "-fopenmp-simd",  # honour `omp simd reduction` (generic-shape dot product); no libgomp needed
        "-ffp-contract=fast",  # FMAs: -std=c++17 (ISO) turns contraction off in GCC
        "-DNDEBUG",
        # The wheel's libraries are built with these (lib/cmake/executorch/executorch-config.cmake):
        # c10 headers without a generated macros file, the event tracer's class layout, and
        # parallel_for resolved in libexecutorch_threadpool.so instead of a serial inline copy.
        "-DC10_USING_CUSTOM_GENERATED_MACROS", "-DET_EVENT_TRACER_ENABLED", "-DET_USE_THREADPOOL",
        f"-I{root / 'include'}",
        f"-I{root / 'include' / 'executorch' / 'runtime' / 'core' / 'portable_type' / 'c10'}",
        *map(str, SOURCES),
        "-o", str(output),
        f"-L{lib}", "-lexecutorch", "-lexecutorch_threadpool", f"-Wl,-rpath,{lib}",
    ]


def _library_path() -> Path:
    from executorch.version import __version__ as et_version

    from edgevlm.defaults import home  # $EDGEVLM_HOME, else ~/.cache/edgevlm

    key = hashlib.sha256()
    for source in KERNEL_FILES:
        key.update(source.read_bytes())
    key.update("\0".join(compile_command(Path(LIBRARY_NAME))).encode())
    key.update(f"\0{et_version}\0{platform.machine()}\0{cpu_signature()}".encode())
    return home() / "kernels" / key.hexdigest()[:16] / LIBRARY_NAME


def build_kernel_library() -> Path:
    """Compile export/kernels/*.cpp once per (source, flags, executorch version, CPU) and return
    the cached library, <edgevlm home>/kernels/<key>/libedgevlm_kernels.so ($EDGEVLM_HOME, else
    ~/.cache/edgevlm). $EDGEVLM_CXX names the compiler (default g++). The cache is private and
    checked (export/kernel_cache.py): a library whose sha256 differs from the one recorded when it
    was built is rebuilt, never loaded."""
    from edgevlm.backends.base import MissingTool
    from edgevlm.errors import EdgeVLMError
    from edgevlm.export import kernel_cache

    path = _library_path()
    folder = kernel_cache.prepare(path)  # 0700, ours, writable by no one else, or refused
    with kernel_cache.build_lock(folder):
        kernel_cache.remove_stale_temps(folder, LIBRARY_NAME)
        if kernel_cache.trusted(path):
            return path
        command = compile_command(path)
        compiler = command[0]
        if shutil.which(compiler) is None:
            raise MissingTool(f"C++ compiler {compiler!r} not found; the ExecuTorch INT4 attention kernel "
                              "(edgevlm::int4_sdpa) is compiled on first use",
                              "install g++ (apt-get install g++), or point EDGEVLM_CXX at a C++17 compiler")
        # Build into a private file and rename: a reader sees the old state or a whole library.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{LIBRARY_NAME}.", suffix=".tmp")
        os.close(fd)
        try:
            command[command.index("-o") + 1] = tmp
            proc = subprocess.run(command, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
                names = ", ".join(source.name for source in SOURCES)
                raise EdgeVLMError(f"compiling {names} failed (exit {proc.returncode}):\n{tail}",
                                   "install a C++17 compiler (apt-get install g++) and the executorch wheel this "
                                   f"edgevlm pins; command: {' '.join(command)}")
            os.chmod(tmp, 0o700)  # private, like its folder
            os.replace(tmp, path)
            kernel_cache.write_record(path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def kernel_registered() -> bool:
    """Whether ExecuTorch's runtime (the Python bindings' registry) has the edgevlm kernels."""
    from executorch.extension.pybindings import portable_lib

    return set(KERNEL_NAMES) <= set(portable_lib._get_operator_names())


def load_kernel_library() -> Path:
    """Register the torch op, build the kernel library if needed and load it into this process, which
    registers the edgevlm kernels for executorch.runtime. Loads once per process: ExecuTorch
    aborts on a second registration of the same kernel name."""
    global _loaded
    register_op()
    with _lock:
        if _loaded is not None:
            return _loaded
        path = build_kernel_library()
        # The bindings first, so the kernel lands in the registry their libexecutorch.so holds
        # (one copy per process: the library's soname is shared).
        if not kernel_registered():
            from edgevlm.export import kernel_cache

            kernel_cache.load(path)  # hashes the bytes it loads against the build's record
        _loaded = path
        return path
