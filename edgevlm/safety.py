"""What edgevlm refuses to read or load: paths that leave their folder, tensors of the wrong
dtype class, and cache directories other users can write.

- `confined(root, name, entry)`: a file named by a manifest or checkpoint index must be a relative
  path that stays inside `root` after symlinks are resolved (a `.mlpackage` folder: every file in
  it too). Anything else (`../x`, `/etc/passwd`, a symlink out) is refused with the entry named.
- `check_weight_map` / `check_dtypes`: the checkpoint index's types and paths, and each stored
  tensor's dtype class (float / int / bool) against the model's, before any tensor is read.
- `private_directory(path)`: a cache directory this user owns and nobody else can write
  (edgevlm loads native code from it), created 0700 when missing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from edgevlm.errors import CheckpointError, EnvironmentProblem, UnsafePath

MAX_LISTED = 8


def confined(root: Path, name, entry: str, must_exist: bool = False) -> Path:
    """root / name, or UnsafePath naming `entry` if it is not a relative path inside root."""
    root = Path(root)
    if not isinstance(name, str) or not name or "\0" in name:
        raise UnsafePath(f"{entry} is {name!r}, not a file name", "restore the file from the export")
    pure = PurePosixPath(name)
    if pure.is_absolute() or Path(name).is_absolute() or ".." in pure.parts or "\\" in name:
        raise UnsafePath(f"{entry} = {name!r} points outside {root}",
                         "a manifest or index may only name files inside its own folder: re-export, or restore it")
    path = root / name
    base = root.resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(base):
        raise UnsafePath(f"{entry} = {name!r} resolves outside {root} (to {resolved}, through a symlink)",
                         "replace the symlink with the file itself, inside the folder")
    if resolved.is_dir():  # a package folder (.mlpackage): nothing inside may lead out either
        for inner in resolved.rglob("*"):
            if inner.is_symlink() and not inner.resolve().is_relative_to(base):
                raise UnsafePath(f"{entry} = {name!r} contains {inner.relative_to(resolved)}, a symlink to "
                                 f"{inner.resolve()} outside {root}", "restore the folder from the export")
    if must_exist and not resolved.exists():
        raise UnsafePath(f"{entry} = {name!r}: no such file in {root}", "restore the file from the export")
    return path


# ---- checkpoints ---------------------------------------------------------------------------------

def check_weight_map(model_dir: Path, index: Path, weight_map) -> None:
    """The index's weight_map is {tensor name: shard file inside model_dir}; refuse anything else."""
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index}: weight_map is a {type(weight_map).__name__}, not a mapping of tensor "
                              "names to shard files", "restore model.safetensors.index.json from the checkpoint")
    bad = [k for k, v in weight_map.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise CheckpointError(f"{index}: weight_map entries must be strings; {bad[:MAX_LISTED]} are not",
                              "restore model.safetensors.index.json from the checkpoint")
    for shard in sorted(set(weight_map.values())):
        key = next(k for k, v in weight_map.items() if v == shard)
        confined(model_dir, shard, f"{index.name}: weight_map[{key!r}]")


# safetensors dtype names by class; the loader converts within a class (bf16 -> fp32), never across.
DTYPE_CLASSES = {
    "float": {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"},
    "int": {"I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8"},
    "bool": {"BOOL"},
}


def dtype_class(torch_dtype) -> str:
    if torch_dtype.is_floating_point:
        return "float"
    return "bool" if str(torch_dtype) == "torch.bool" else "int"


def check_dtypes(config, stored: dict[str, str], shard_of: dict[str, str], model_dir: Path) -> None:
    """Every stored tensor's dtype (safetensors name, by key) is of the class the model expects (I32
    bits are not weights); shard_of names each key's file for the message."""
    from edgevlm.checkpoint.layout import expected_parameters

    expected = {k: dtype_class(dtype) for k, (_, dtype) in expected_parameters(config).items()}
    wrong = [f"{key} in {shard_of[key]}: {dtype}, expected {expected[key]}" for key, dtype in stored.items()
             if key in expected and dtype not in DTYPE_CLASSES[expected[key]]]
    if wrong:
        more = f" ... and {len(wrong) - MAX_LISTED} more" if len(wrong) > MAX_LISTED else ""
        raise CheckpointError(f"{len(wrong)} tensor(s) in {model_dir} have the wrong dtype class: "
                              + "; ".join(wrong[:MAX_LISTED]) + more,
                              "the checkpoint is corrupt or not a MiniCPM-V checkpoint: restore it")


def read_processor_config(path: Path) -> dict:
    """preprocessor_config.json, with the normalization fields edgevlm reads type-checked."""
    from edgevlm.errors import ConfigError
    from edgevlm.jsonfiles import read_json_object

    fix = "restore preprocessor_config.json from the checkpoint"
    data = read_json_object(path, "preprocessor config", ConfigError, max_bytes=16 << 20, fix=fix)
    for key in ("norm_mean", "norm_std"):
        value = data.get(key)
        ok = value is None or (isinstance(value, list) and len(value) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) < 1e6 for x in value))
        if not ok or (key == "norm_std" and value and any(x <= 0 for x in value)):
            raise ConfigError(f"{path}: {key} is {value!r}; expected three numbers (std > 0)", fix)
    return data


# ---- cache directories ---------------------------------------------------------------------------

def private_directory(path: Path, purpose: str) -> Path:
    """Create (0700) or accept `path` only if this user owns it and no one else can write it; every
    missing parent is created 0700 too."""
    path = Path(path)
    try:
        for part in reversed([path, *path.parents]):
            if not part.exists():
                part.mkdir(mode=0o700)
    except (FileExistsError, NotADirectoryError):  # a component is a file
        raise EnvironmentProblem(f"cannot create the {purpose} {path}: a file is in the way",
                                 "move that file away, or point $EDGEVLM_HOME at a folder") from None
    except PermissionError as e:
        raise EnvironmentProblem(f"cannot create the {purpose} {path} ({e.strerror})",
                                 "point $EDGEVLM_HOME at a folder you own") from None
    check_private(path, purpose)
    return path


def check_private(path: Path, purpose: str) -> None:
    """Refuse a file or folder owned by another user, or writable by group or others."""
    info = os.lstat(path)
    kind = "folder" if stat.S_ISDIR(info.st_mode) else "file"
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symlink"
    elif hasattr(os, "getuid") and info.st_uid != os.getuid():
        problem = f"is owned by uid {info.st_uid}, not by you (uid {os.getuid()})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"is writable by {'others' if info.st_mode & stat.S_IWOTH else 'its group'} " \
                  f"(mode {stat.S_IMODE(info.st_mode):o})"
    else:
        return
    raise EnvironmentProblem(f"refusing the {purpose} {kind} {path}: it {problem}, so someone else could plant code "
                             "edgevlm would load", f"remove it (edgevlm rebuilds it), or `chmod go-w {path}`")
