"""Host-side preprocessing driven by a manifest's `preprocessing` block: what an app (or `verify`)
does before calling the vision encoder, with no model weights."""

from __future__ import annotations

import torch

from edgevlm.config import MiniCPMVConfig


def preprocessing_block(config: MiniCPMVConfig, processor_config: dict) -> dict:
    """The manifest's description of preprocessing, from a model's config."""
    return {
        "slice_config": {"max_slice_nums": config.slice_config.max_slice_nums,
                         "scale_resolution": config.slice_config.scale_resolution,
                         "patch_size": config.slice_config.patch_size},
        "slice_mode": config.slice_mode,
        "norm_mean": processor_config.get("norm_mean", [0.5, 0.5, 0.5]),
        "norm_std": processor_config.get("norm_std", [0.5, 0.5, 0.5]),
        "patch_size": config.vision_config.patch_size,
        "num_patches_per_side": config.vision_config.num_patches_per_side,
        "resampler_pos": {"kind": "2d_sincos", "added_to": "values" if config.has_temporal_resampler else "keys",
                          "embed_dim": config.llm.hidden_size},
    }


def manifest_slices(image, preprocessing: dict) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(per-slice patch rows [3, p, n*p], tgt_sizes [S, 2]) for one image, source slice first."""
    from edgevlm.preprocess import image_slices

    sc = preprocessing["slice_config"]
    rows, sizes, _ = image_slices(image, max_slice_nums=sc["max_slice_nums"], scale_resolution=sc["scale_resolution"],
                        patch_size=sc["patch_size"], slice_mode=preprocessing["slice_mode"],
                                    mean=preprocessing["norm_mean"], std=preprocessing["norm_std"])
    return rows, sizes
