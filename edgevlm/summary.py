"""`edgevlm inspect`: what a checkpoint directory holds, read from headers only (no weights loaded,
no model built), so it takes about as long as importing torch, even for an 8B checkpoint."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from edgevlm.checkpoint.loader import _open, load_config, weight_files
from edgevlm.tokenizer import load_tokenizer

MODULES = ("vpm", "resampler", "llm")


def inspect_checkpoint(model_dir: Path, check: bool = False) -> dict:
    """Parameter counts come from the weight files' headers. `check` also compares every stored name
    and shape with the model config.json describes, which builds that model on the meta device
    (seconds: most of it importing the model code), so it is asked for, not the default."""
    model_dir = Path(model_dir)
    config = load_config(model_dir)
    files = weight_files(model_dir)
    shapes, dtypes, file_bytes = {}, Counter(), 0
    for name in files:
        handle = _open(model_dir / name)
        file_bytes += (model_dir / name).stat().st_size
        for key in handle.keys():
            sl = handle.get_slice(key)
            shapes[key] = tuple(sl.get_shape())
            dtypes[str(sl.get_dtype())] += 1
    if check:
        from edgevlm.checkpoint.loader import check_keys

        check_keys(config, shapes, model_dir)
    params = {m: 0 for m in MODULES}
    for key, shape in shapes.items():
        module = key.split(".", 1)[0]
        bucket = module if module in MODULES else "other"  # only a checkpoint --check would refuse has "other"
        params[bucket] = params.get(bucket, 0) + math.prod(shape)
    tok = load_tokenizer(model_dir, embedding_rows=config.llm.vocab_size)
    v, llm = config.vision_config, config.llm
    return {
        "path": str(model_dir),
        "version": config.version,
        "llm_family": llm.arch,
        "parameters": {**params, "total": sum(params.values())},
        "weights": {"files": len(files), "bytes": file_bytes, "dtypes": dict(dtypes)},
        "vision": {"layers": config.num_vision_layers_used, "width": v.hidden_size, "mlp": v.intermediate_size,
                   "heads": v.num_attention_heads, "patch_size": v.patch_size,
                   "position_grid": f"{v.num_patches_per_side}x{v.num_patches_per_side}"},
        "resampler": {"queries": config.query_num, "width": llm.hidden_size, "heads": config.resampler_heads,
                      "temporal": config.has_temporal_resampler},
        "llm": {"layers": llm.num_hidden_layers, "width": llm.hidden_size, "heads": llm.num_attention_heads,
                "kv_heads": llm.num_key_value_heads, "head_dim": llm.resolved_head_dim, "vocab": llm.vocab_size,
                "max_positions": llm.max_position_embeddings},
        "tokenizer": {"vocab": tok.vocab_size, "bos": tok.bos_token, "eos": tok.eos_token,
                      "chat_template": bool(tok.chat_template)},
        "slicing": {"max_slice_nums": config.slice_config.max_slice_nums,
                    "scale_resolution": config.slice_config.scale_resolution,
                    "patch_size": config.slice_config.patch_size, "slice_mode": config.slice_mode,
                    "use_image_id": config.use_image_id},
    }
