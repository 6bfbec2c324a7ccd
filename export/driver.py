"""`edgevlm export`: model directory + recipe -> artifacts + manifest.json, written atomically.

Stages, each timed with its peak RSS (recorded in the manifest's `export.resources`):
validate the recipe against config.json (no weights read); load the vision tower only (fp32);
slice the built-in verification images and record the eager reference outputs one slice at a
time; let each vision target's backend write its artifact; embed the decoder's calibration set
(AWQ) and free the vision tower; build each decoder target's LLM a layer at a time straight from
the checkpoint shards and write it (export/llm_build.py); hash everything into the manifest;
publish the temporary directory by renaming it. No stage holds the float LLM: an 8B checkpoint
exports within a 16 GB runner's memory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from edgevlm.backends.base import VisionExportRequest, get_vision_backend
from edgevlm.calibration.synthetic import verification_images
from edgevlm.checkpoint.layout import atomic_directory
from edgevlm.checkpoint.loader import CheckpointReader, LoadedModel, load_config, load_model
from edgevlm.errors import EdgeVLMError
from edgevlm.export.decoder.artifact import export_decoder_target
from edgevlm.export.gates import ACCURACY_DROP_POINTS, accuracy_gate, gate_for
from edgevlm.export.host import manifest_slices, preprocessing_block
from edgevlm.export.integrity import support_files
from edgevlm.export import manifest_builders
from edgevlm.export.manifest import sha256_path, toolchain_versions, write_manifest
from edgevlm.export.manifest_builders import vision_entry
from edgevlm.export.recipes import DEFAULT_MAX_PATCHES, Recipe, VisionTarget, resolve_for_model
from edgevlm.preprocess.prompt import assembly_block
from edgevlm.export.vision import INPUT_NAMES, OUTPUT_NAMES, StaticVisionEncoder, vision_inputs
from edgevlm.progress import log, progress_bar
from edgevlm.resources import ScratchFiles, StageRecorder, release_memory, tune_allocator

PARTS = ("vision", "decoder", "all")
VERIFICATION_DIR = "verification"


def image_slices(image, loaded: LoadedModel):
    """(per-slice patch rows, tgt_sizes) from the same host code `verify` and apps use."""
    return manifest_slices(image, preprocessing_block(loaded.config, loaded.processor_config))


def artifact_stem(loaded: LoadedModel, part: str, target: VisionTarget) -> str:
    """The naming grammar of DESIGN.md: <model>-<version>.<part>.<target>.<precision>."""
    token = get_vision_backend(target.backend).target_token(target.options)
    return f"minicpmv-{loaded.config.version}.{part}.{token}.{target.precision}"


def export_model(model_dir: Path, recipe: Recipe, out_dir: Path, part: str = "all", overwrite: bool = False,
                 on_stage=None) -> Path:
    """on_stage(name, record | None): called when a stage starts (None) and ends (its StageRecord)."""
    if part not in PARTS:
        raise EdgeVLMError(f"unknown part {part!r}", f"use one of {', '.join(PARTS)}")
    if part == "decoder" and not recipe.decoder:
        raise EdgeVLMError(f"recipe {recipe.name} has no decoder target",
                           "use a recipe with a decoder section (ios-m4, android-sd8g3, ort), or --part vision")
    tune_allocator()
    stages = StageRecorder(on_stage)
    with stages.stage("validate"):
        config = load_config(model_dir)
        recipe = resolve_for_model(recipe, config)  # a recipe that cannot work fails before any weight is read
        reader = CheckpointReader(model_dir)
        reader.check(config)  # keys, shapes and dtype classes, from the shard headers
    vision_targets = recipe.vision if part in ("vision", "all") else ()
    decoder_targets = recipe.decoder if part in ("decoder", "all") else ()
    calibrated = [t for t in decoder_targets if t.weight_calibration != "rtn" and t.weights != "fp32"]
    with_vision = [t for t in decoder_targets if t.vision_in_pte]
    with stages.stage("load vision tower"):
        needed = bool(vision_targets or calibrated or with_vision)
        loaded = load_model(model_dir, parts=("vision",) if needed else ())
    # the scratch folder is named as a partial output, so a killed run's is cleaned by the next one
    scratch_prefix = f".{Path(out_dir).name}.partial-scratch-"
    with atomic_directory(out_dir, overwrite=overwrite) as tmp, ScratchFiles(Path(tmp).parent, scratch_prefix) as scratch:
        manifest = base_manifest(loaded, recipe)
        if vision_targets:
            with stages.stage("verification set"):
                manifest["verification"] = write_verification_set(loaded, tmp / VERIFICATION_DIR)
        for target in vision_targets:
            with stages.stage(f"vision {target.backend} {target.precision}"):
                manifest["artifacts"].append(export_vision_target(loaded, recipe, target, tmp))
        if decoder_targets:
            from edgevlm.export.llm_source import CheckpointLayers

            source = CheckpointLayers(reader, config.llm)
            embeddings = []
            if calibrated:
                spec = recipe.calibration
                with stages.stage("decoder calibration set", images=spec.images):
                    embeddings = decoder_calibration(loaded, recipe, source)
            # the .pte's vision_encoder takes the recipe's vision slices, or the default size without one
            max_patches = recipe.vision[0].max_patches if recipe.vision else DEFAULT_MAX_PATCHES
            vision = pte_vision(loaded, max_patches) if with_vision else None
            if not with_vision:
                loaded.model.to("meta")  # the vision tower's part is done: free it before the LLM
                release_memory()
            for target in decoder_targets:
                entry = export_decoder_target(loaded, recipe, target, tmp, source, embeddings, vision,
                                              park=scratch.park, stage=stages.stage)
                manifest["artifacts"].append(entry)  # with its own kv_cache block
        tokenizer_dir = tmp / "tokenizer"
        tokenizer_dir.mkdir()
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(Path(model_dir) / name, tokenizer_dir / name)
        manifest["files"] = support_files(tmp)  # sha256 of the tokenizer and verification files
        manifest["export"] = {"part": part, "resources": stages.summary(),
                              "scratch_bytes": scratch.bytes}
        write_manifest(tmp, manifest)
    return Path(out_dir)


def decoder_calibration(loaded: LoadedModel, recipe: Recipe, source) -> list[torch.Tensor]:
    """The calibration set's input embeddings (vision rows placed), one image at a time."""
    from edgevlm.calibration.awq import calibration_embeddings

    spec = recipe.calibration
    embeddings = calibration_embeddings(loaded, spec.source, spec.images, spec.seed, embed=source.embed)
    log.info("decoder calibration set", extra={"sequences": len(embeddings),
                                                "tokens": sum(len(e) for e in embeddings)})
    return embeddings


def export_vision_target(loaded: LoadedModel, recipe: Recipe, target: VisionTarget, out: Path) -> dict:
    backend = get_vision_backend(target.backend)
    # Quantizing backends ask for a padding bias that fits their activation ranges (export/vision.py).
    mask_value = backend.mask_value
    encoder = StaticVisionEncoder(loaded.model.vpm, loaded.model.resampler, mask_value).eval()
    cfg = loaded.config
    example_slices, example_sizes = image_slices(verification_images()[0][1], loaded)
    example = vision_inputs(example_slices[:1], example_sizes[:1], target.max_patches, loaded.model.resampler,
                            cfg.vision_config.num_patches_per_side, batch=target.batch)
    calibration = []
    if target.precision not in ("fp32", "fp16"):
        calibration = calibration_inputs(loaded, recipe, target)
    stem = artifact_stem(loaded, "vision", target)
    request = VisionExportRequest(encoder, example.arrays, calibration, target.precision, dict(target.options), stem,
                                  model_facts=model_facts(loaded))
    with torch.no_grad():
        written = backend.export(request, out)
    main = written[0]
    d = cfg.llm.hidden_size
    return vision_entry(
        root=Path(out), files=[w.path for w in written], recipe=recipe.name, target=target.backend,
        runtime=main.runtime, precision=target.precision,
        inputs=[io_spec(n, example.arrays[n]) for n in INPUT_NAMES],
        outputs=[{"name": OUTPUT_NAMES[0], "shape": [target.batch, cfg.query_num, d], "dtype": "float32"}],
        max_patches=target.max_patches, batch=target.batch,
        quality_gate=gate_for(target.precision, target.options.get("compression", "none")).to_dict(),
        details={"attention_mask_value": mask_value} | main.details)


def model_facts(loaded: LoadedModel) -> dict:
    """What a vision artifact may say about its model and preprocessing (Core ML package metadata);
    the same values as the manifest's model and preprocessing blocks."""
    cfg = loaded.config
    pre = preprocessing_block(cfg, loaded.processor_config)
    return {"model_id": model_id(loaded), "model_version": cfg.version, "llm_family": cfg.llm.arch,
            "patch_size": pre["patch_size"], "num_patches_per_side": pre["num_patches_per_side"],
            "norm_mean": pre["norm_mean"], "norm_std": pre["norm_std"], "slice_config": pre["slice_config"],
            "slice_mode": pre["slice_mode"],
            "resampler_pos": {k: v for k, v in pre["resampler_pos"].items() if k != "frequencies"},  # metadata stays small
            "image_placeholder": "<image>" + loaded.tokenizer.unk_token * cfg.query_num + "</image>"}


def model_id(loaded: LoadedModel) -> str:
    return loaded.config.extra.get("_name_or_path") or loaded.path.name


def pte_vision(loaded: LoadedModel, max_patches: int):
    """(fp32 static encoder, example inputs) for a multimodal .pte that carries the vision encoder."""
    encoder = StaticVisionEncoder(loaded.model.vpm, loaded.model.resampler).eval()
    slices, sizes = image_slices(verification_images()[0][1], loaded)
    example = vision_inputs(slices[:1], sizes[:1], max_patches, loaded.model.resampler,
                            loaded.config.vision_config.num_patches_per_side, batch=1)
    return encoder, example.arrays


def io_spec(name: str, array: np.ndarray) -> dict:
    return {"name": name, "shape": list(array.shape), "dtype": str(array.dtype)}


def calibration_inputs(loaded: LoadedModel, recipe: Recipe, target: VisionTarget) -> list[dict]:
    """One static-shape batch per calibration slice (source and grid slices of each image)."""
    from edgevlm.calibration.datasets import calibration_samples

    spec = recipe.calibration
    samples = calibration_samples(spec.source, spec.images, spec.seed)
    images = list({id(s.image): s.image for s in samples}.values())  # an image with several prompts counts once
    batches = []
    for image in images:
        slices, sizes = image_slices(image, loaded)
        for i in range(0, len(slices), target.batch):
            batches.append(vision_inputs(slices[i:i + target.batch], sizes[i:i + target.batch], target.max_patches,
                                         loaded.model.resampler, loaded.config.vision_config.num_patches_per_side,
                                         batch=target.batch).arrays)
    log.info("calibration set", extra={"images": len(images), "batches": len(batches)})
    return batches


def write_verification_set(loaded: LoadedModel, folder: Path) -> dict:
    """Save the verification images and the eager fp32 vision embeddings of every slice, encoded one
    slice at a time (a 1344x1344 image is 10 slices of 1024 patches: as one batch, its SigLIP
    attention alone is 10 x 16 x 1024^2 floats)."""
    folder.mkdir(parents=True)
    cases, refs = [], {}
    sliced = [(name, image, *image_slices(image, loaded)) for name, image in verification_images()]
    # minutes at full size (5 min for 4.0's SigLIP): a bar on a terminal, a count line in CI logs
    with progress_bar(sum(len(s) for _, _, s, _ in sliced), "verification set (eager vision)",
                      report_every_s=30) as advance:
        for name, image, slices, sizes in sliced:
            image.save(folder / f"{name}.png")
            rows = []
            for i in range(len(slices)):
                with torch.no_grad():
                    rows.append(loaded.model.encode_images(slices[i:i + 1], sizes[i:i + 1]).float().numpy())
                advance()
            refs[name] = np.concatenate(rows)
            cases.append({"name": name, "image": f"{VERIFICATION_DIR}/{name}.png", "slices": len(slices),
                          "tgt_sizes": sizes.tolist()})
    np.savez(folder / "vision_reference.npz", **refs)
    return {"reference": f"{VERIFICATION_DIR}/vision_reference.npz", "cases": cases}


def base_manifest(loaded: LoadedModel, recipe: Recipe) -> dict:
    cfg, tok = loaded.config, loaded.tokenizer
    special = ["<image>", "</image>", "<slice>", "</slice>", "<image_id>", "</image_id>", tok.unk_token]
    return manifest_builders.manifest(
        model={"id": model_id(loaded), "version": cfg.version, "llm_family": cfg.llm.arch, "source": str(loaded.path),
               "config_sha256": sha256_path(loaded.path / "config.json")},
        # the task-accuracy gates `edgevlm quality` judges with and `verify` re-applies
        recipe={"name": recipe.name, "description": recipe.description,
                "accuracy_gates": {c: accuracy_gate(c, recipe.quality.max_accuracy_drop).to_dict()
                                   for c in ACCURACY_DROP_POINTS}},
        preprocessing=preprocessing_block(cfg, loaded.processor_config),
        prompt={"chat_template": tok.chat_template, "use_image_id": cfg.use_image_id,
                "image_placeholder": "<image>" + tok.unk_token * cfg.query_num + "</image>",
                "slice_placeholder": "<slice>" + tok.unk_token * cfg.query_num + "</slice>"}
               | ({"assembly": assembly} if (assembly := assembly_block(tok, cfg)) else {}),
        special_tokens={t: tok.maybe_token_id(t) for t in special}
                       | {"bos": tok.maybe_token_id(tok.bos_token), "eos": tok.maybe_token_id(tok.eos_token),
                          "stop": sorted(tok.stop_token_ids())},
        query_num=cfg.query_num,
        llm={"hidden_size": cfg.llm.hidden_size, "vocab_size": cfg.llm.vocab_size,
             "max_seq_len": cfg.llm.max_position_embeddings},
        config=loaded.config.to_dict(),  # what `edgevlm run` needs to preprocess and prompt
        toolchain=toolchain_versions())
