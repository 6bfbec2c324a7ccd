"""Host-side preprocessing driven by a manifest's `preprocessing` block: what an app (or `verify`)
does before calling the vision encoder, with no model weights."""

from __future__ import annotations

import torch

from edgevlm.config import MiniCPMVConfig
from edgevlm.model.resampler import sincos_frequencies


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
                          "embed_dim": config.llm.hidden_size,
                          # this host's numpy frequencies of the 2D table's halves: a runtime that reads
                          # them builds the table bit for bit as `edgevlm run` does here
                          "frequencies": sincos_frequencies(config.llm.hidden_size // 2).tolist()},
    }


def manifest_slices(image, preprocessing: dict) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(per-slice patch rows [3, p, n*p], tgt_sizes [S, 2]) for one image, source slice first."""
    from edgevlm.preprocess import image_slices

    sc = preprocessing["slice_config"]
    rows, sizes, _ = image_slices(image, max_slice_nums=sc["max_slice_nums"], scale_resolution=sc["scale_resolution"],
                        patch_size=sc["patch_size"], slice_mode=preprocessing["slice_mode"],
                                    mean=preprocessing["norm_mean"], std=preprocessing["norm_std"])
    return rows, sizes


def largest_slice(preprocessing: dict, images) -> int:
    """Patches of the largest slice this preprocessing makes of `images`."""
    return max(int(size.prod()) for image in images for size in manifest_slices(image, preprocessing)[1])


def check_max_patches(model_dir, recipe) -> None:
    """Refuse, from config.json alone (before the model loads), a recipe whose static patch count is
    too small for the slices this model's preprocessing makes of the export's own images (the
    verification set; the calibration set too when a target quantizes)."""
    from pathlib import Path

    from edgevlm.calibration.synthetic import verification_images
    from edgevlm.checkpoint.layout import PREPROCESSOR_FILE
    from edgevlm.errors import ConfigError
    from edgevlm.export.recipes import DEFAULT_MAX_PATCHES
    from edgevlm.safety import read_processor_config

    model_dir = Path(model_dir)
    if not recipe.vision or not (model_dir / "config.json").is_file():
        return  # load_model reports a missing model or config with its own message
    config = MiniCPMVConfig.from_file(model_dir / "config.json")
    processor = model_dir / PREPROCESSOR_FILE
    pre = preprocessing_block(config, read_processor_config(processor) if processor.is_file() else {})
    images, what = [image for _, image in verification_images()], "verification"
    if any(v.precision not in ("fp32", "fp16") for v in recipe.vision):
        from edgevlm.calibration.datasets import calibration_samples

        spec = recipe.calibration
        images += list({id(s.image): s.image for s in calibration_samples(spec.source, spec.images, spec.seed)}.values())
        what = "verification and calibration"
    need = largest_slice(pre, images)
    small = min(v.max_patches for v in recipe.vision)
    if small < need:
        sc = pre["slice_config"]
        raise ConfigError(f"max_patches {small} is too small for this model: its preprocessing (scale_resolution "
                          f"{sc['scale_resolution']}, patch_size {sc['patch_size']}) cuts the export's {what} "
                          f"images into slices of up to {need} patches",
                          f"use --max-patches {need} or more (the default {DEFAULT_MAX_PATCHES} fits aspect ratios up "
                          "to ~1:32)")
