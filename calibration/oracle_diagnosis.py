"""Why the quality oracle (edgevlm-tiny) barely looks at the image: the experiments, one command.

    python -m edgevlm.calibration.oracle_diagnosis --out DIR [--model DIR] [--samples 1000]

Seeded and CPU-only (one thread by default), a few minutes. Writes DIR/diagnosis.json and
DIR/diagnosis.md. Sections:

- priors: per question kind, chance (1 / answers the kind can have), the kind-majority answer and
  a question-text-only classifier (the majority answer of each exact question string, fitted on
  the train split): what a model that never looks at the image can score; and the loss such a
  blind model reaches (mean -log p(answer | question) over the answer token and the stop token).
- geometry: the image as the model sees it at the checkpoint's scale_resolution (slices, patch
  grids, how many patches a shape or a glyph spans).
- ablation: the model's exact match per kind with its vision embeddings as they are, zeroed,
  with Gaussian noise at 20 dB SQNR, and computed from a blank canvas of the same size and
  background; how often the prediction is the same as with vision.
- embeddings: the norm of vision rows against token rows, the last prompt position's attention
  mass on the vision rows per decoder layer, and each part's share of the gradient.
- probes: logistic regression on single-shape colour / shape and on shape count, from the
  trained tower's and resampler's pooled outputs, the same architecture at initialisation, and
  the raw source view downsampled to its patch grid.
- direct: the vision pathway at initialisation (tower + resampler + a linear head) trained
  directly on colour and count for a few hundred steps: can it learn them at all at this
  resolution and query count?
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from edgevlm.calibration import vqa

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "edgevlm" / "assets" / "edgevlm-tiny"
ANSWER_SETS = {"count": [str(i) for i in (1, 2, 3, 4)], "colour": list(vqa.COLOURS), "shape": list(vqa.KINDS),
               "position": ["left", "right"], "word": list(vqa.WORDS), "number": [str(i) for i in range(100)]}


# ---- priors: what a blind model can score ---------------------------------------------------------


def priors(n_train: int, heldout: list) -> dict:
    train = [vqa.sample("train", i) for i in range(n_train)]
    by_question: dict[str, Counter] = defaultdict(Counter)
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for s in train:
        by_question[s.question][s.answer] += 1
        by_kind[s.kind][s.answer] += 1
    kind_major = {k: c.most_common(1)[0][0] for k, c in by_kind.items()}
    q_major = {q: c.most_common(1)[0][0] for q, c in by_question.items()}
    rows = {}
    for kind in vqa.QUESTION_KINDS:
        items = [s for s in heldout if s.kind == kind]
        answers = Counter(s.answer for s in items)
        rows[kind] = {
            "samples": len(items),
            "chance": 1 / len(ANSWER_SETS[kind]),
            "kind_majority": sum(s.answer == kind_major[kind] for s in items) / max(1, len(items)),
            "question_prior": sum(s.answer == q_major.get(s.question, kind_major[kind])
                                  for s in items) / max(1, len(items)),
            "answer_distribution": dict(answers.most_common()),
        }
    n = len(heldout)
    overall = {
        "kind_majority": sum(s.answer == kind_major[s.kind] for s in heldout) / n,
        "question_prior": sum(s.answer == q_major.get(s.question, kind_major[s.kind]) for s in heldout) / n,
        "chance": sum(1 / len(ANSWER_SETS[s.kind]) for s in heldout) / n,
    }
    # The blind loss: the training loss is the mean NLL over the answer token and the stop token
    # (every answer is one token); a blind model's best answer-token NLL is H(answer | question).
    nll, nll_kind = [], defaultdict(list)
    for s in heldout:
        c = by_question.get(s.question)
        size = len(ANSWER_SETS[s.kind])
        p = (c[s.answer] + 0.5) / (sum(c.values()) + 0.5 * size) if c else 1 / size
        nll.append(-math.log(p))
        nll_kind[s.kind].append(-math.log(p))
    for kind, values in nll_kind.items():
        rows[kind]["blind_answer_nll"] = float(np.mean(values))
    kind_share = Counter(s.kind for s in train)
    return {"train_samples": n_train, "by_kind": rows, "overall": overall,
            "blind_loss_per_token": float(np.mean(nll)) / 2, "blind_answer_nll": float(np.mean(nll)),
            "train_kind_share": {k: v / n_train for k, v in kind_share.items()},
            "distinct_questions": len(by_question)}


# ---- geometry: the image as the model sees it -----------------------------------------------------


def geometry(heldout: list, config) -> dict:
    from edgevlm.preprocess.slicing import slice_layout

    sc = config.slice_config
    p = sc.patch_size
    slices, source_grids, shape_src, shape_slice, glyph_src, glyph_slice = Counter(), Counter(), [], [], [], []
    patches = []
    for s in heldout:
        w, h = s.scene.size
        lay = slice_layout((w, h), sc.max_slice_nums, sc.scale_resolution, p)
        slices[lay.num_slices] += 1
        grids = lay.patch_grids(p)
        source_grids[f"{grids[0][0]}x{grids[0][1]}"] += 1
        patches.append(sum(a * b for a, b in grids))
        src_scale = lay.source_size[0] / w
        ref_scale = lay.refine_size[0] / w if lay.grid else None
        for sh in s.scene.shapes:
            side = sh.box[2] - sh.box[0]
            shape_src.append(side * src_scale / p)
            if ref_scale:
                shape_slice.append(side * ref_scale / p)
        if s.scene.text:
            from edgevlm.calibration.vqa import _font

            x0, y0, x1, y1 = _font(s.scene.font_size).getbbox(s.scene.text)
            glyph_h = (y1 - y0)
            glyph_src.append(glyph_h * src_scale / p)
            if ref_scale:
                glyph_slice.append(glyph_h * ref_scale / p)

    def stats(values):
        a = np.asarray(values)
        return {"mean": round(float(a.mean()), 2), "p10": round(float(np.percentile(a, 10)), 2),
                "p50": round(float(np.median(a)), 2), "p90": round(float(np.percentile(a, 90)), 2),
                "below_2_patches": round(float((a < 2).mean()), 3)} if len(a) else {}

    return {"scale_resolution": sc.scale_resolution, "patch_size": p, "max_slice_nums": sc.max_slice_nums,
            "query_num": config.query_num,
            "slices_per_image": dict(sorted(slices.items())), "source_patch_grid": dict(source_grids.most_common(6)),
            "patches_per_image": stats(patches),
            "vision_rows_per_image": config.query_num * sum(k * v for k, v in slices.items()) / len(heldout),
            "shape_side_patches_source": stats(shape_src), "shape_side_patches_slice": stats(shape_slice),
            "glyph_height_patches_source": stats(glyph_src), "glyph_height_patches_slice": stats(glyph_slice),
            "images_sliced": round(sum(v for k, v in slices.items() if k > 1) / len(heldout), 3)}


# ---- ablation: does the answer depend on the vision rows? -----------------------------------------


def _blank(scene: vqa.Scene) -> vqa.Scene:
    return vqa.Scene(scene.size, scene.background, ())


@torch.inference_mode()
def ablation(loaded, heldout: list, seed: int) -> dict:
    from edgevlm.calibration.oracle_eval import normalise
    from edgevlm.generate import generate
    from edgevlm.preprocess import preprocess

    resampler = loaded.model.resampler
    original = resampler.forward
    gen = torch.Generator().manual_seed(seed)
    mode = {"name": "vision"}

    def patched(*args, **kwargs):
        out = original(*args, **kwargs)
        if mode["name"] == "zeroed":
            return torch.zeros_like(out)
        if mode["name"] == "noise_20db":
            power = out.pow(2).mean()
            return out + torch.randn(out.shape, generator=gen) * (power / 100).sqrt()
        return out

    resampler.forward = patched
    conditions = ("vision", "zeroed", "noise_20db", "blank_canvas")
    predictions = {c: [] for c in conditions}
    try:
        for s in heldout:
            for c in conditions:
                mode["name"] = c
                image = vqa.render(_blank(s.scene)) if c == "blank_canvas" else s.image()
                inputs = preprocess([image], s.question, loaded.tokenizer, loaded.config, loaded.processor_config)
                predictions[c].append(generate(loaded, inputs, max_new_tokens=8).text)
    finally:
        resampler.forward = original
    out = {}
    for c in conditions:
        per_kind = {}
        for kind in vqa.QUESTION_KINDS:
            idx = [i for i, s in enumerate(heldout) if s.kind == kind]
            ok = [normalise(predictions[c][i]) == normalise(heldout[i].answer) for i in idx]
            same = [normalise(predictions[c][i]) == normalise(predictions["vision"][i]) for i in idx]
            hist = Counter(normalise(predictions[c][i]) for i in idx)
            per_kind[kind] = {"exact_match": sum(ok) / max(1, len(ok)), "same_as_vision": sum(same) / max(1, len(same)),
                              "distinct_predictions": len(hist), "top_predictions": dict(hist.most_common(4))}
        ok_all = [normalise(p) == normalise(s.answer) for p, s in zip(predictions[c], heldout)]
        same_all = [normalise(p) == normalise(q) for p, q in zip(predictions[c], predictions["vision"])]
        out[c] = {"exact_match": sum(ok_all) / len(ok_all), "same_as_vision": sum(same_all) / len(same_all),
                  "by_kind": per_kind}
    return out


# ---- embeddings: scale, attention, gradient share --------------------------------------------------


def embedding_stats(model, heldout: list, tokenizer, config, processor_config, n: int = 64) -> dict:
    from edgevlm.preprocess import preprocess

    vis_norms, tok_norms, attn = [], [], defaultdict(list)
    fraction = []
    llm = model.llm
    try:
        llm.set_attn_implementation("eager")
        has_attn = True
    except Exception:  # noqa: BLE001 - older transformers: no attention maps, the rest still runs
        has_attn = False
    with torch.inference_mode():
        emb = llm.get_input_embeddings().weight
        for s in heldout[:n]:
            inputs = preprocess([s.image()], s.question, tokenizer, config, processor_config)
            vision = model.encode_images(inputs.pixel_values, inputs.tgt_sizes)
            vis_norms.append(float(vision.norm(dim=-1).mean()))
            tok_norms.append(float(emb[inputs.input_ids].norm(dim=-1).mean()))
            if has_attn:
                embeds = model.embed_inputs(inputs.input_ids, vision, inputs.image_bounds)
                out = llm(inputs_embeds=embeds[None], output_attentions=True)
                mask = torch.zeros(len(inputs.input_ids), dtype=torch.bool)
                for a, b in inputs.image_bounds.tolist():
                    mask[a:b] = True
                fraction.append(float(mask.float().mean()))
                for layer, att in enumerate(out.attentions):
                    attn[layer].append(float(att[0, :, -1][:, mask].sum(-1).mean()))
    if has_attn:
        try:
            llm.set_attn_implementation("sdpa")
        except Exception:  # noqa: BLE001
            pass
    return {"vision_row_norm": float(np.mean(vis_norms)), "prompt_token_row_norm": float(np.mean(tok_norms)),
            "vision_share_of_prompt": float(np.mean(fraction)) if fraction else None,
            "last_position_attention_on_vision": {str(k): float(np.mean(v)) for k, v in attn.items()}}


def gradient_share(model, tokenizer, config, n: int = 16) -> dict:
    from edgevlm.calibration.train_oracle import batch_loss, encode_sample

    batch = [encode_sample(vqa.sample("train", 900_000 + i), tokenizer, config) for i in range(n)]
    model.zero_grad(set_to_none=True)
    model.train()
    seen = {}
    forward = model.resampler.forward

    def keep(x, *args, **kwargs):  # keep the tower features and the vision embeddings' gradients
        x.retain_grad()
        out = forward(x, *args, **kwargs)
        out.retain_grad()
        seen["tower_features"], seen["vision_embeds"] = x, out
        return out

    model.resampler.forward = keep
    try:
        loss = batch_loss(model, batch)
        loss.backward()
    finally:
        model.resampler.forward = forward
    model.eval()
    wrt = {f"grad_wrt_{k}": float(v.grad.norm()) for k, v in seen.items()}
    sq = defaultdict(float)
    for name, p in model.named_parameters():
        if p.grad is not None:
            sq[name.split(".")[0]] += float(p.grad.pow(2).sum())
    total = sum(sq.values())
    model.zero_grad(set_to_none=True)
    return {"loss": float(loss), **wrt, "vision_embeds_norm": float(seen["vision_embeds"].norm()),
            "grad_norm": {k: math.sqrt(v) for k, v in sq.items()},
            "grad_share": {k: v / total for k, v in sq.items()}}


# ---- probes ---------------------------------------------------------------------------------------


def probe_scenes(n: int, seed: int, single: bool) -> list[vqa.Scene]:
    scenes, i = [], 0
    while len(scenes) < n:
        scene = vqa.make_scene(2_000_000_000 + seed * 10_000_000 + i)
        i += 1
        if not single or len(scene.shapes) == 1:
            scenes.append(scene)
    return scenes


@torch.inference_mode()
def features(model, config, scenes: list, pooled_only: bool = False) -> dict[str, np.ndarray]:
    """Per scene: pooled tower features and pooled resampler outputs of the source view, the source
    view's resampler outputs flattened, pooled resampler outputs over every slice, raw pixels."""
    from edgevlm.preprocess.patches import image_slices

    sc = config.slice_config
    out = defaultdict(list)
    for scene in scenes:
        rows, tgt, _ = image_slices(vqa.render(scene), sc.max_slice_nums, sc.scale_resolution, sc.patch_size)
        feats = model.vision_features(rows, tgt)
        res = model.resampler(feats, tgt)
        h, w = tgt[0].tolist()
        out["tower_pooled"].append(feats[0, : h * w].mean(0).numpy())
        out["resampler_pooled"].append(res[0].mean(0).numpy())
        out["resampler_flat"].append(res[0].flatten().numpy())
        out["resampler_all_slices_pooled"].append(res.mean((0, 1)).numpy())
        # The source view itself, each patch averaged to one RGB value (8x8 patches -> 192 numbers
        # at 112): what a linear model sees of the pixels at the tower's own granularity.
        from edgevlm.preprocess.patches import patches_to_image

        img = patches_to_image(rows[0], (h, w), sc.patch_size)
        pooled = torch.nn.functional.adaptive_avg_pool2d(img[None], (8, 8))[0]
        out["pixels_8x8"].append(pooled.flatten().numpy())
    return {k: np.stack(v) for k, v in out.items()}


def logistic_probe(x_train, y_train, x_test, y_test, seed: int) -> float:
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x_train)
        clf = LogisticRegression(max_iter=3000, C=1.0, random_state=seed)
        clf.fit(scaler.transform(x_train), y_train)
        return float(clf.score(scaler.transform(x_test), y_test))
    except ImportError:  # torch fallback: full-batch L-BFGS on standardised features
        mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
        xt = torch.tensor((x_train - mu) / sd, dtype=torch.float32)
        xv = torch.tensor((x_test - mu) / sd, dtype=torch.float32)
        classes = sorted(set(y_train))
        yt = torch.tensor([classes.index(v) for v in y_train])
        lin = torch.nn.Linear(xt.shape[1], len(classes))
        opt = torch.optim.LBFGS(lin.parameters(), max_iter=500)

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(lin(xt), yt) + 1e-3 * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        pred = [classes[i] for i in lin(xv).argmax(1).tolist()]
        return float(np.mean([p == t for p, t in zip(pred, y_test)]))


def probes(models: dict, config, n_train: int, n_test: int, seed: int) -> dict:
    single = probe_scenes(n_train + n_test, seed, single=True)
    multi = probe_scenes(n_train + n_test, seed + 1, single=False)
    tasks = {"colour": (single, [s.shapes[0].colour for s in single]),
             "shape": (single, [s.shapes[0].kind for s in single]),
             "count": (multi, [len(s.shapes) for s in multi])}
    cache = {}
    result = {}
    for task, (scenes, labels) in tasks.items():
        y = np.asarray([str(v) for v in labels])
        row = {"majority": float(Counter(y[n_train:]).most_common(1)[0][1] / n_test), "classes": len(set(y))}
        for model_name, model in models.items():
            key = (model_name, id(scenes))
            if key not in cache:
                cache[key] = features(model, config, scenes)
            feats = cache[key]
            for feat_name, x in feats.items():
                if feat_name == "pixels_8x8":
                    name = "pixels_8x8"
                    if name in row:
                        continue
                else:
                    name = f"{model_name}/{feat_name}"
                row[name] = logistic_probe(x[:n_train], y[:n_train], x[n_train:], y[n_train:], seed)
        result[task] = row
    return result


# ---- direct: can the vision pathway learn the attributes at all? --------------------------------


def direct_training(config, seed: int, steps: int, n_test: int) -> dict:
    from edgevlm.calibration.train_oracle import build_model
    from edgevlm.preprocess.patches import image_slices

    sc = config.slice_config
    out = {}
    for task in ("colour", "count"):
        torch.manual_seed(seed)
        _, model = build_model(seed)
        classes = list(vqa.COLOURS) if task == "colour" else ["1", "2", "3", "4"]
        head = torch.nn.Linear(config.llm.hidden_size, len(classes))
        params = list(model.vpm.parameters()) + list(model.resampler.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)

        def encode(scenes):
            pv, tg, counts = [], [], []
            for scene in scenes:
                rows, tgt, _ = image_slices(vqa.render(scene), sc.max_slice_nums, sc.scale_resolution, sc.patch_size)
                pv += rows
                tg.append(tgt)
                counts.append(len(rows))
            emb = model.encode_images(pv, torch.cat(tg))
            pooled, k = [], 0
            for c in counts:  # pool every slice's queries of one image: the head sees the whole image
                pooled.append(emb[k:k + c].mean((0, 1)))
                k += c
            return head(torch.stack(pooled))

        def label(scene):
            return classes.index(scene.shapes[0].colour if task == "colour" else str(len(scene.shapes)))

        single = task == "colour"
        train = probe_scenes(steps * 16, seed + 10, single)
        test = probe_scenes(n_test, seed + 20, single)
        curve = []
        t0 = time.perf_counter()
        model.train()
        for step in range(steps):
            batch = train[step * 16:(step + 1) * 16]
            loss = torch.nn.functional.cross_entropy(encode(batch), torch.tensor([label(s) for s in batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (step + 1) % max(1, steps // 4) == 0:
                model.eval()
                with torch.inference_mode():
                    pred = torch.cat([encode(test[i:i + 32]).argmax(1) for i in range(0, n_test, 32)])
                acc = float((pred == torch.tensor([label(s) for s in test])).float().mean())
                curve.append({"step": step + 1, "heldout_accuracy": acc, "loss": float(loss)})
                model.train()
        out[task] = {"curve": curve, "steps": steps, "batch": 16, "wall_s": round(time.perf_counter() - t0, 1)}
    return out


# ---- trace: when does the decoder stop using vision? ----------------------------------------------


def training_trace(tokenizer, config, processor_config, heldout: list, seed: int, steps: int,
                   every: int, proj_scale: float = 1.0, kinds: tuple[str, ...] = (),
                   lr: float | None = None) -> list[dict]:
    """The shipped recipe (train_oracle's model init, batches, loss, AdamW and schedule, 1500-step
    schedule) replayed for `steps` steps; every `every` steps: loss, the vision embeddings'
    gradient, the last prompt position's attention on vision rows, and vision-zeroed vs normal
    exact match on the first 100 held-out samples.

    Variants, one change each: `proj_scale` multiplies the initial resampler.proj (0.02 brings
    the vision rows to the text embeddings' norm); `kinds` trains (and scores) only those
    question kinds (e.g. colour,count: no answer can be guessed from the question); `lr` replaces
    the peak learning rate (1e-3)."""
    from edgevlm.calibration.options import TrainConfig
    from edgevlm.calibration.train_oracle import _Batches, batch_loss, build_model, lr_at
    from edgevlm.calibration.oracle_eval import normalise
    from edgevlm.checkpoint.loader import LoadedModel
    from edgevlm.generate import generate
    from edgevlm.preprocess import preprocess

    torch.manual_seed(seed)
    cfg = TrainConfig(seed=seed) if lr is None else TrainConfig(seed=seed, lr=lr)
    _, model = build_model(seed)
    if proj_scale != 1.0:
        with torch.no_grad():
            model.resampler.proj.mul_(proj_scale)
    batches = _Batches(cfg, tokenizer, config)
    if kinds:
        from edgevlm.calibration.train_oracle import encode_sample

        stream = (s for i in range(10 ** 9) if (s := vqa.sample("train", i)).kind in kinds)
        batches = [[encode_sample(next(stream), tokenizer, config) for _ in range(cfg.batch_size)]
                   for _ in range(steps)]
        heldout = [s for s in heldout if s.kind in kinds]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "norm" in n or "embed" in n]
    decay = [p for n, p in model.named_parameters() if not (p.ndim < 2 or "norm" in n or "embed" in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    loaded = LoadedModel(path=Path("<trace>"), config=config, model=model, tokenizer=tokenizer,
                         processor_config=processor_config, dtype=torch.float32)
    probe = heldout[:100]
    trace, window = [], []

    def exact(zero: bool) -> float:
        forward = model.resampler.forward
        if zero:
            model.resampler.forward = lambda *a, **k: torch.zeros_like(forward(*a, **k))
        try:
            with torch.inference_mode():
                ok = [normalise(generate(loaded, preprocess([s.image()], s.question, tokenizer, config,
                                                            processor_config), max_new_tokens=4).text)
                      == normalise(s.answer) for s in probe]
        finally:
            model.resampler.forward = forward
        return sum(ok) / len(ok)

    for step in range(steps + 1):
        if step % every == 0:
            model.eval()
            grads = gradient_share(model, tokenizer, config, n=8)
            attn = embedding_stats(model, heldout, tokenizer, config, processor_config, n=16)
            trace.append({"step": step, "train_loss": round(float(np.mean(window)), 4) if window else None,
                          "grad_wrt_vision_embeds": grads["grad_wrt_vision_embeds"],
                          "grad_share_vpm_resampler": (grads["grad_share"].get("vpm", 0)
                                                       + grads["grad_share"].get("resampler", 0)),
                          "vision_row_norm": attn["vision_row_norm"],
                          "attention_on_vision": attn["last_position_attention_on_vision"],
                          "exact_match_100": exact(False), "exact_match_100_zeroed": exact(True)})
            print(f"[trace] {trace[-1]}", flush=True)
            window = []
        if step == steps:
            break
        model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = batch_loss(model, batches[step])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        window.append(loss.item())
    return trace


# ---- the report ----------------------------------------------------------------------------------


def markdown(r: dict) -> str:
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [f"# Oracle diagnosis: {r['model']}", "",
             f"Held-out samples {r['samples']} (heldout split 0..{r['samples'] - 1}); seed {r['seed']}; "
             f"threads {r['threads']}.", ""]
    ab, pr = r.get("ablation"), r["priors"]
    lines += ["## Exact match per kind (%)", "",
              "| kind | n | chance | kind majority | question prior | model | vision zeroed | 20 dB noise "
              "| blank canvas "
              "| same answer zeroed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for kind in vqa.QUESTION_KINDS:
        p = pr["by_kind"][kind]
        if ab:
            a = [ab[c]["by_kind"].get(kind, {}).get("exact_match")
                 for c in ("vision", "zeroed", "noise_20db", "blank_canvas")]
            same = ab["zeroed"]["by_kind"].get(kind, {}).get("same_as_vision")
        else:
            a, same = [None] * 4, None
        lines.append(f"| {kind} | {p['samples']} | {pct(p['chance'])} | {pct(p['kind_majority'])} | "
                     f"{pct(p['question_prior'])} | " + " | ".join(pct(v) for v in a) + f" | {pct(same)} |")
    o = pr["overall"]
    if ab:
        a = [ab[c]["exact_match"] for c in ("vision", "zeroed", "noise_20db", "blank_canvas")]
        same = ab["zeroed"]["same_as_vision"]
    else:
        a, same = [None] * 4, None
    lines.append(f"| **all** | {r['samples']} | {pct(o['chance'])} | {pct(o['kind_majority'])} | "
                 f"{pct(o['question_prior'])} | " + " | ".join(f"**{pct(v)}**" for v in a) + f" | {pct(same)} |")
    lines += ["", f"Blind (question-only) optimum of the training loss: {pr['blind_loss_per_token']:.3f} nats/token "
              f"(answer NLL {pr['blind_answer_nll']:.3f} + stop token ~0, over 2 tokens); "
              f"the shipped run's final loss: {r.get('final_train_loss')}.", ""]
    if r.get("train_loss_curve"):
        lines += ["Shipped run's loss (10-step means): " + ", ".join(
            f"step {x['step']}: {x['loss']}" for x in r["train_loss_curve"]), ""]
    if "probes" in r:
        pb = r["probes"]
        names = [k for k in pb["colour"] if k not in ("majority", "classes")]
        lines += ["## Linear probes (held-out accuracy, %)", "", "| features | " + " | ".join(pb) + " |",
                  "|---|" + "---|" * len(pb)]
        lines.append("| majority class | " + " | ".join(pct(pb[t]["majority"]) for t in pb) + " |")
        for n in names:
            lines.append(f"| {n} | " + " | ".join(pct(pb[t].get(n)) for t in pb) + " |")
        lines.append("")
    if "direct" in r:
        lines += ["## Vision pathway from init, trained directly (pooled resampler -> linear head)", ""]
        for task, d in r["direct"].items():
            curve = ", ".join(f"step {c['step']}: {pct(c['heldout_accuracy'])}%" for c in d["curve"])
            lines.append(f"- {task}: {curve} (batch {d['batch']}, {d['wall_s']} s)")
        lines.append("")
    if r.get("trace"):
        lines += ["## Replaying the shipped recipe: when vision stops mattering", "",
                  f"Variant: {r.get('trace_variant')}; EM on the first 100 held-out samples (of the traced kinds).", "",
                  "| step | train loss | grad wrt vision embeds | vpm+resampler grad share | attn on vision (layers) "
                  "| EM (100) | EM zeroed (100) |", "|---|---|---|---|---|---|---|"]
        for t in r["trace"]:
            att = "/".join(f"{v:.2f}" for v in t["attention_on_vision"].values())
            lines.append(f"| {t['step']} | {t['train_loss']} | {t['grad_wrt_vision_embeds']:.2e} | "
                         f"{t['grad_share_vpm_resampler']:.2e} | {att} | {pct(t['exact_match_100'])} | "
                         f"{pct(t['exact_match_100_zeroed'])} |")
        lines.append("")
    if "geometry" in r:
        g = r["geometry"]
        lines += ["## The image as the model sees it", "", "```", json.dumps(g, indent=1), "```", ""]
    if "embeddings" in r:
        lines += ["## Embedding scale, attention, gradient share", "", "```", json.dumps(
            {k: r[k] for k in ("embeddings", "gradients") if k in r}, indent=1), "```", ""]
    lines += ["## Time per experiment (s)", "", "| experiment | wall s |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in r["timings_s"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--samples", type=int, default=1000, help="held-out samples (the standard set is the first 300)")
    ap.add_argument("--prior-train", type=int, default=50_000, help="train samples the question-prior is fitted on")
    ap.add_argument("--probe-train", type=int, default=1200)
    ap.add_argument("--probe-test", type=int, default=600)
    ap.add_argument("--direct-steps", type=int, default=300, help="0 skips the direct training")
    ap.add_argument("--trace-steps", type=int, default=0,
                    help="replay the shipped training recipe this many steps, measuring vision use as it goes")
    ap.add_argument("--trace-every", type=int, default=50)
    ap.add_argument("--trace-proj-scale", type=float, default=1.0, help="scale the initial resampler.proj in the trace")
    ap.add_argument("--trace-lr", type=float, default=None, help="peak learning rate of the trace (default 1e-3)")
    ap.add_argument("--trace-kinds", default="",
                    help="comma-separated question kinds the trace trains on (default all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip", default="", help="comma-separated sections to skip (ablation,probes,direct,...)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    skip = set(filter(None, args.skip.split(",")))
    from edgevlm.calibration.train_oracle import build_model
    from edgevlm.checkpoint.loader import load_model

    args.out.mkdir(parents=True, exist_ok=True)
    loaded = load_model(args.model, dtype="float32")
    heldout = vqa.dataset("heldout", args.samples)
    train_json = args.model / "oracle_train.json"
    r = {"model": str(args.model), "samples": args.samples, "seed": args.seed, "threads": args.threads,
         "final_train_loss": json.loads(train_json.read_text()).get("final_loss") if train_json.exists() else None,
         "timings_s": {}}

    def timed(name, fn):
        t0 = time.perf_counter()
        r[name] = fn()
        r["timings_s"][name] = round(time.perf_counter() - t0, 1)
        print(f"[{name}] {r['timings_s'][name]} s", flush=True)

    timed("priors", lambda: priors(args.prior_train, heldout))
    metrics = args.model / "oracle_train_metrics.jsonl"
    if metrics.exists():  # the shipped run's loss curve, against the blind optimum above
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        marks = {10, 50, 100, 200, 400, 700, 1000}
        r["train_loss_curve"] = [{"step": x["step"], "loss": x["loss"]} for x in records
                                 if x["step"] in marks or x is records[-1]]
    timed("geometry", lambda: geometry(heldout, loaded.config))
    if "ablation" not in skip:
        timed("ablation", lambda: ablation(loaded, heldout, args.seed))
    _, init_model = build_model(args.seed)
    init_model.eval()
    if "embeddings" not in skip:
        def both():
            return {"trained": embedding_stats(loaded.model, heldout, loaded.tokenizer, loaded.config,
                                               loaded.processor_config),
                    "init": embedding_stats(init_model, heldout, loaded.tokenizer, loaded.config,
                                            loaded.processor_config)}
        timed("embeddings", both)
        timed("gradients", lambda: {"trained": gradient_share(loaded.model, loaded.tokenizer, loaded.config),
                                    "init": gradient_share(init_model, loaded.tokenizer, loaded.config)})
    if "probes" not in skip:
        timed("probes", lambda: probes({"trained": loaded.model, "init": init_model}, loaded.config,
                                       args.probe_train, args.probe_test, args.seed))
    if args.trace_steps:
        timed("trace", lambda: training_trace(loaded.tokenizer, loaded.config, loaded.processor_config, heldout,
                                              args.seed, args.trace_steps, args.trace_every, args.trace_proj_scale,
                                              tuple(filter(None, args.trace_kinds.split(","))), args.trace_lr))
        r["trace_variant"] = {"proj_scale": args.trace_proj_scale, "kinds": args.trace_kinds or "all",
                              "lr": args.trace_lr or 1e-3}
    if "direct" not in skip and args.direct_steps:
        timed("direct", lambda: direct_training(loaded.config, args.seed, args.direct_steps, 480))
    (args.out / "diagnosis.json").write_text(json.dumps(r, indent=2) + "\n")
    text = markdown(r)
    (args.out / "diagnosis.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
