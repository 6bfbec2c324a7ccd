"""Export recipes: data (YAML), parsed into a typed tree, held in a registry.

Built-in recipes live in `export/recipes/*.yaml`. A user adds one without touching code by
passing a path to a YAML file of the same shape (`--recipe ./my-recipe.yaml`), or by dropping
files into `$EDGEVLM_RECIPES` (a directory). Unknown names fail with the list of known ones.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgevlm.errors import ConfigError

BUILTIN_DIR = Path(__file__).parent / "recipes"
# What each decoder backend accepts (weights, KV formats, attention and its default, options) is
# declared by the backend itself (backends/base.py DecoderSupport, DECODER_BACKENDS).
WEIGHT_CALIBRATIONS = ("rtn", "awq", "awq-fast")  # calibration/awq.py SETTINGS
VISION_PRECISIONS = {"ort": {"fp32", "fp16", "int8"}, "coreml": {"fp16"}, "qnn": {"w8a16", "w4a16"}}


# Patches per static vision slice: MiniCPM-V's 448-px slices are at most 1024 patches at 1:1, and
# 1120 also fits the elongated slices of aspect ratios up to ~1:32 (export/host.py checks a model's).
DEFAULT_MAX_PATCHES = 1120


@dataclass(frozen=True)
class VisionTarget:
    backend: str
    precision: str
    max_patches: int = DEFAULT_MAX_PATCHES
    batch: int = 1
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DecoderTarget:
    backend: str  # executorch (XNNPACK .pte) | ort (ONNX Runtime CPU .onnx)
    weights: str = "8da4w"  # executorch: fp32 | 8da4w (torchao); ort: fp32 | int4 (MatMulNBits)
    group_size: int = 32
    # rtn: round-to-nearest as the quantizer does it; awq: activation-aware scales folded in first
    # (calibration/awq.py, on the recipe's calibration set); awq-fast: a coarser, ~8x cheaper search
    weight_calibration: str = "rtn"
    embedding: str = "fp32"  # token-embedding table: fp32 | bf16 | int8 | int4 (per 32-wide row group; executorch only: int4)
    kv_cache: str = "int4"  # fp32 | fp16 | int8 | int4
    kv_group_size: int | str = "auto"  # head-dim elements per scale/zero; auto: kv_cache.auto_group_size
    kv_rotate_keys: bool = True
    max_seq_len: int = 2048
    vision_in_pte: bool = False  # also carry the vision_encoder method (ExecuTorch multimodal runner)
    # executorch .pte: custom (ExecuTorch's LLM ops + ours for INT4, cost grows with the context) |
    # static (masked attention over the whole cache, no custom kernels for the app to link). The
    # ort decoder is static (its cache is graph I/O). None: the backend's default (its DecoderSupport).
    attention: str | None = None
    options: dict = field(default_factory=dict)

    @property
    def precision(self) -> str:
        return f"{self.weights}-kv{self.kv_cache}"


@dataclass(frozen=True)
class CalibrationSpec:
    source: str = "builtin"  # builtin | a directory of images
    images: int = 16
    seed: int = 0


@dataclass(frozen=True)
class QualitySpec:
    # component (vision | decoder | end_to_end) -> largest held-out accuracy drop in points
    # (export/gates.py ACCURACY_DROP_POINTS are the defaults)
    max_accuracy_drop: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    vision: tuple[VisionTarget, ...]
    decoder: tuple[DecoderTarget, ...] = ()
    calibration: CalibrationSpec = CalibrationSpec()
    quality: QualitySpec = QualitySpec()
    source: str = ""


# Ranges of recipe values by field name (any dataclass); other int fields must fit in int32.
RANGES = {"max_patches": (1, 4096), "batch": (1, 64), "group_size": (1, 4096), "kv_group_size": (1, 4096),
          "max_seq_len": (1, 1 << 20), "images": (1, 100_000), "seed": (0, 2 ** 32 - 1)}


def check_top_level(data, source: str) -> None:
    """The document is a mapping of Recipe's own fields (a typo like `visoin:` is an error, not a no-op)."""
    if not isinstance(data, dict) or "name" not in data:
        raise ConfigError(f"recipe {source} is not a mapping with a `name`", "see export/recipes/ort.yaml for the shape")
    allowed = [f.name for f in dataclasses.fields(Recipe) if f.name != "source"]
    for key in data:
        if key not in allowed:
            import difflib

            close = difflib.get_close_matches(str(key), allowed, n=1)
            raise ConfigError(f"recipe {source}: unknown top-level key {key!r}"
                              + (f" (did you mean {close[0]!r}?)" if close else ""),
                              f"top-level keys: {', '.join(allowed)}")
    from edgevlm.typed import field_problems

    # an empty section (`decoder:` with nothing under it) reads as null and means "none"
    given = {k: v for k, v in data.items() if v is not None or k == "name"}
    problems = field_problems(Recipe, given, "recipe")
    if problems:
        raise ConfigError(f"recipe {source}: " + "; ".join(problems), "see export/recipes/ort.yaml for the shape")


def check_fields(kind, raw, source: str, where: str) -> None:
    """Types and ranges of one section, driven by the dataclass's own annotations."""
    from edgevlm.typed import field_problems, missing_fields

    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {source}: {where} is {raw!r}, not a mapping of fields",
                          f"write {where} as `field: value` lines (see export/recipes/ort.yaml)")
    problems = [f"{where} lacks `{name}`" for name in missing_fields(kind, raw)]
    problems += field_problems(kind, raw, where, RANGES)
    if problems:
        raise ConfigError(f"recipe {source}: " + "; ".join(problems), "fix the recipe")


def _parse(data: dict, source: str) -> Recipe:
    check_top_level(data, source)

    def build(kind, raw, where):
        names = {f.name for f in dataclasses.fields(kind)}
        unknown = set(raw) - names if isinstance(raw, dict) else set()
        if unknown:  # first: a misspelt field also shows up as a missing one
            raise ConfigError(f"recipe {source}: unknown field(s) {sorted(unknown, key=str)} in {where}",
                              f"allowed fields: {sorted(names)}")
        check_fields(kind, raw, source, where)
        return kind(**raw)

    vision = tuple(build(VisionTarget, v, f"vision[{i}]") for i, v in enumerate(data.get("vision") or []))
    for target in vision:
        allowed = VISION_PRECISIONS.get(target.backend)
        if allowed is None:
            raise ConfigError(f"recipe {source}: unknown vision backend {target.backend!r}",
                              f"known backends: {', '.join(VISION_PRECISIONS)}")
        if target.precision not in allowed:
            raise ConfigError(f"recipe {source}: backend {target.backend} has no precision {target.precision!r}",
                              f"{target.backend} supports: {', '.join(sorted(allowed))}")
        if target.max_patches < 1 or target.batch < 1:
            raise ConfigError(f"recipe {source}: max_patches and batch must be positive", "fix the recipe")
    decoder = tuple(build(DecoderTarget, d, f"decoder[{i}]") for i, d in enumerate(data.get("decoder") or []))
    decoder = tuple(check_decoder_target(t, source) for t in decoder)
    calibration = build(CalibrationSpec, data.get("calibration") or {}, "calibration")
    quality = build(QualitySpec, data.get("quality") or {}, "quality")
    from edgevlm.export.gates import ACCURACY_DROP_POINTS

    for component, bound in quality.max_accuracy_drop.items():
        if component not in ACCURACY_DROP_POINTS or isinstance(bound, bool) or not isinstance(bound, (int, float)) \
                or not 0 <= bound <= 100:
            raise ConfigError(f"recipe {source}: quality.max_accuracy_drop[{component!r}] = {bound!r}",
                              f"components: {', '.join(ACCURACY_DROP_POINTS)}; bounds are points from 0 to 100")
    return Recipe(name=data["name"], description=data.get("description", ""), vision=vision, decoder=decoder,
                  calibration=calibration, quality=quality, source=source)


def _one_of(source: str, backend: str, name: str, value, allowed, known) -> None:
    """value among this backend's `allowed`; `known`: the values of every decoder backend (a value
    another backend takes reads as "not this backend", any other as "unknown")."""
    if value in allowed:
        return
    if value in known:
        raise ConfigError(f"recipe {source}: the {backend} decoder has no {value!r} {name}",
                          f"the {backend} decoder's {name}: {', '.join(map(str, allowed))}")
    raise ConfigError(f"recipe {source}: unknown decoder {name} {value!r}", f"{name}: {', '.join(map(str, allowed))}")


def check_decoder_target(target: DecoderTarget, source: str) -> DecoderTarget:
    """The target checked against its backend's declarations (backends/base.py DecoderSupport),
    with the backend's defaults filled in; every refused value is named with the allowed ones."""
    from edgevlm.backends.base import DECODER_BACKENDS, get_decoder_backend

    if target.backend not in DECODER_BACKENDS:
        raise ConfigError(f"recipe {source}: unknown decoder backend {target.backend!r}",
                          f"known decoder backends: {', '.join(DECODER_BACKENDS)}")
    support = get_decoder_backend(target.backend).support
    every = [get_decoder_backend(name).support for name in DECODER_BACKENDS]
    if target.attention is None:
        target = dataclasses.replace(target, attention=support.default_attention)
    if target.weights in support.refused_weights:
        problem, fix = support.refused_weights[target.weights]
        raise ConfigError(f"recipe {source}: {problem}", fix)
    if target.weights not in support.weights:
        raise ConfigError(f"recipe {source}: decoder backend {target.backend} has no weight scheme {target.weights!r}",
                          f"{target.backend} decoder weights: {', '.join(support.weights)}")
    if target.weight_calibration not in WEIGHT_CALIBRATIONS:
        raise ConfigError(f"recipe {source}: unknown decoder weight_calibration {target.weight_calibration!r}",
                          f"use one of {', '.join(WEIGHT_CALIBRATIONS)}")
    _one_of(source, target.backend, "embedding", target.embedding, support.embeddings,
            {v for s in every for v in s.embeddings})
    if target.kv_group_size != "auto" and not (isinstance(target.kv_group_size, int) and target.kv_group_size > 0):
        raise ConfigError(f"recipe {source}: decoder kv_group_size {target.kv_group_size!r}",
                          "use auto or a positive even number that divides the model's head dimension")
    _one_of(source, target.backend, "kv_cache", target.kv_cache, support.kv_formats,
            {v for s in every for v in s.kv_formats})
    _one_of(source, target.backend, "attention", target.attention, support.attention,
            {v for s in every for v in s.attention})
    if target.vision_in_pte and not support.vision_in_artifact:
        raise ConfigError(f"recipe {source}: vision_in_pte is an ExecuTorch (.pte) option",
                          f"drop vision_in_pte from the {target.backend} decoder; its vision target is its own artifact")
    check_decoder_options(support, target, f"recipe {source}: {target.backend} decoder")
    return target


def check_decoder_options(support, target: DecoderTarget, where: str) -> None:
    """`options` keys and (where declared) values against the backend's DecoderSupport."""
    unknown = sorted(set(target.options) - set(support.options), key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}",
                          f"allowed: {', '.join(support.options) or 'none'}")
    fmt = target.options.get("weight_format")
    if fmt is not None and fmt not in support.weight_formats:
        raise ConfigError(f"{where}: unknown weight_format {fmt!r}", f"weight_format: {', '.join(support.weight_formats)}")


def resolve_for_model(recipe: Recipe, config) -> Recipe:
    """The recipe with its per-model defaults filled in (kv_group_size: auto), checked against the
    model's config before anything is loaded: every value that cannot work for this model is named
    with the values that can."""
    from edgevlm.export.decoder.kv_cache import KVCacheSpec, auto_group_size

    llm = config.llm
    head_dim = llm.resolved_head_dim
    decoder = []
    for i, target in enumerate(recipe.decoder):
        where = f"recipe {recipe.name}: decoder[{i}]"
        group = auto_group_size(head_dim) if target.kv_group_size == "auto" else target.kv_group_size
        target = dataclasses.replace(target, kv_group_size=group)
        try:
            KVCacheSpec(target.kv_cache, group, target.kv_rotate_keys).validate(head_dim)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e.problem}", e.fix) from None
        widths = {"hidden_size": llm.hidden_size, "intermediate_size": llm.intermediate_size,
                  "attention output (heads x head_dim)": llm.num_attention_heads * head_dim}
        if target.weights != "fp32":
            bad = {name: width for name, width in widths.items() if width % target.group_size}
            if bad:
                raise ConfigError(f"{where}: weight group_size {target.group_size} does not divide the model's "
                                  + ", ".join(f"{k} {v}" for k, v in bad.items()),
                                  "use a group_size that divides every linear's input width: "
                                  + ", ".join(str(g) for g in (16, 32, 64, 128) if all(w % g == 0 for w in widths.values())))
        if target.embedding in ("int8", "int4") and llm.hidden_size % 32:
            raise ConfigError(f"{where}: {target.embedding} embedding groups of 32 do not divide hidden_size "
                              f"{llm.hidden_size}",
                              "use embedding: bf16 or fp32")
        if target.max_seq_len < 2 or target.max_seq_len > llm.max_position_embeddings:
            raise ConfigError(f"{where}: max_seq_len {target.max_seq_len} is outside 2..{llm.max_position_embeddings} "
                              "(the model's max_position_embeddings)", "set max_seq_len within that range")
        decoder.append(target)
    return dataclasses.replace(recipe, decoder=tuple(decoder))


def _recipe_dirs() -> list[Path]:
    extra = os.environ.get("EDGEVLM_RECIPES")
    return [BUILTIN_DIR] + ([Path(extra)] if extra else [])


def known_recipes() -> dict[str, Path]:
    found = {}
    for directory in _recipe_dirs():
        for path in sorted(directory.glob("*.yaml")):
            found[path.stem] = path
    return found


def load_recipe(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """A built-in or user recipe by name, or a YAML path; `overrides` are `--set section.field=value`
    strings (export/recipe_overrides.py), applied before the document is checked."""
    from edgevlm.export.recipe_overrides import apply_overrides

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist", "pass an existing YAML file or a recipe name")
    else:
        known = known_recipes()
        if name_or_path not in known:
            raise ConfigError(f"unknown recipe {name_or_path!r}", f"known recipes: {', '.join(known)}; "
                              "or pass the path of a recipe YAML file")
        path = known[name_or_path]
    document = read_recipe_yaml(path)
    try:
        return _parse(apply_overrides(document, overrides), str(path))
    except ConfigError as e:
        if not overrides or e.problem.startswith("--set"):
            raise
        raise ConfigError(f"{e.problem} (after --set {' '.join(overrides)})", e.fix) from None


def read_recipe_yaml(path: Path):
    """The YAML document of a recipe file, size-capped and parsed strictly (no anchors/aliases)."""
    from edgevlm.limits import MAX_RECIPE_BYTES
    from edgevlm.strict_yaml import load

    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise ConfigError(f"recipe {path} is {size} bytes; recipes are at most {MAX_RECIPE_BYTES} bytes",
                          "pass the recipe YAML file itself (the built-in ones are about 1 KB)")
    try:
        return load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"recipe {path} is not UTF-8 text ({e.reason} at byte {e.start})",
                          "save the recipe as UTF-8 YAML") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML ({e})", "fix the file") from None
