"""The oracle diagnosis' model experiments (see oracle_diagnosis.py): linear probes on the vision
pathway's outputs, the vision pathway trained directly on colour and count (and on the trainer's
scene targets), and a replay of the
oracle's training that traces when the decoder stops using the image."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from edgevlm.calibration import vqa

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
        loss, _, _ = batch_loss(model, batch)
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
        if len(scene.shapes) == 1 or (not single and scene.shapes):  # counts 1-4: the count probe's classes
            scenes.append(scene)
    return scenes


@torch.inference_mode()
def scene_views(model, config, scene: vqa.Scene):
    """One scene through the vision pathway: (patch rows, tgt_sizes, tower features, resampler
    outputs [views, Q, D], the source view first)."""
    from edgevlm.preprocess.patches import image_slices

    sc = config.slice_config
    rows, tgt, _ = image_slices(vqa.render(scene), sc.max_slice_nums, sc.scale_resolution, sc.patch_size)
    feats = model.vision_features(rows, tgt)
    return rows, tgt, feats, model.resampler(feats, tgt)


@torch.inference_mode()
def features(model, config, scenes: list, pooled_only: bool = False) -> dict[str, np.ndarray]:
    """Per scene: pooled tower features and pooled resampler outputs of the source view, the source
    view's resampler outputs flattened, pooled resampler outputs over every slice, raw pixels."""
    sc = config.slice_config
    out = defaultdict(list)
    for scene in scenes:
        rows, tgt, feats, res = scene_views(model, config, scene)
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


def direct_scene_training(config, tokenizer, seed: int, steps: int, lr: float, n_test: int = 300,
                          batch: int = 16) -> dict:
    """The vision pathway from init + the trainer's scene head (oracle_aux), no decoder: how fast can
    it learn to bind shape to colour, count and read the word, on the training stream's scenes?
    Scored on held-out images every 100 steps: the shape of each present colour (argmax over that
    colour's three pair logits; chance 1/3), the count, and the word (or none) from the best view."""
    from edgevlm.calibration.oracle_aux import COLOURS, SceneHead
    from edgevlm.calibration.train_oracle import _warmup_lr, build_model, encode_sample

    torch.manual_seed(seed)
    _, model = build_model(seed)
    head = SceneHead(config.query_num, config.llm.hidden_size)
    params = list(model.vpm.parameters()) + list(model.resampler.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    held = [encode_sample(vqa.sample("heldout", i), tokenizer, config) for i in range(n_test)]

    def vision(items):
        rows = model.encode_images([p for it in items for p in it["pixel_values"]],
                                   torch.cat([it["tgt_sizes"] for it in items]))
        return rows, [len(it["pixel_values"]) for it in items]

    def score() -> dict:
        right = total = counted = words = 0
        with torch.inference_mode():
            for i in range(0, n_test, 50):
                items = held[i:i + 50]
                out = head.logits(*vision(items))
                pairs = out["pairs"].view(len(items), len(COLOURS), -1)
                for j, it in enumerate(items):
                    truth = it["scene"]["pairs"].view(len(COLOURS), -1)
                    present = truth.sum(1) > 0
                    right += int((pairs[j][present].argmax(1) == truth[present].argmax(1)).sum())
                    total += int(present.sum())
                    counted += int(out["count"][j].argmax() == it["scene"]["count"])
                    words += int(out["word"][j].argmax() == it["scene"]["word"])
        return {"shape_given_colour": right / total, "count": counted / n_test, "word": words / n_test}

    curve, t0 = [], time.perf_counter()
    for step in range(steps):
        items = [encode_sample(vqa.sample("train", step * batch + i), tokenizer, config) for i in range(batch)]
        for group in opt.param_groups:
            group["lr"] = _warmup_lr(step, lr, 50)
        rows, views = vision(items)
        loss = head.loss(rows, views, [it["scene"] for it in items])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "loss": round(float(loss), 3),
                          "wall_s": round(time.perf_counter() - t0, 1), **score()})
    return {"curve": curve, "lr": lr, "batch": batch, "heldout_images": n_test}


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
        loss, _, _ = batch_loss(model, batches[step])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        window.append(loss.item())
    return trace
