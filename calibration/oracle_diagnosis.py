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
- scene (`--scene-steps N`): the same pathway trained on the trainer's auxiliary scene targets
  (calibration/oracle_aux.py): how fast it binds shape to colour, counts and reads the word.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from edgevlm.calibration import vqa
from edgevlm.calibration.oracle_experiments import (direct_scene_training, direct_training, embedding_stats,
                                                   gradient_share, probes, training_trace)

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "edgevlm" / "assets" / "edgevlm-tiny"
ANSWER_SETS = {kind: list(answers) for kind, answers in vqa.ANSWERS.items()}


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
def ablation(loaded, heldout: list, seed: int,
             conditions: tuple[str, ...] = ("vision", "zeroed", "noise_20db", "blank_canvas")) -> dict:
    """Answers as the model gives them (`vision`), with the vision embeddings zeroed, with Gaussian
    noise at N dB SQNR on them (`noise_<N>db`, any N), or from a blank canvas of the same size."""
    for c in conditions:
        if c not in ("vision", "zeroed", "blank_canvas") and not re.fullmatch(r"noise_\d+(\.\d+)?db", c):
            raise ValueError(f"unknown ablation condition {c!r}; known: vision, zeroed, blank_canvas, noise_<N>db")
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
        if mode["name"].startswith("noise_"):  # noise_<N>db: Gaussian noise at N dB SQNR
            power = out.pow(2).mean()
            db = float(mode["name"][len("noise_"):-len("db")])
            return out + torch.randn(out.shape, generator=gen) * (power / 10 ** (db / 10)).sqrt()
        return out

    resampler.forward = patched
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
    if "binding" in r:
        from edgevlm.calibration.oracle_binding import markdown as binding_markdown

        lines += binding_markdown(r["binding"])
    if "direct" in r:
        lines += ["## Vision pathway from init, trained directly (pooled resampler -> linear head)", ""]
        for task, d in r["direct"].items():
            curve = ", ".join(f"step {c['step']}: {pct(c['heldout_accuracy'])}%" for c in d["curve"])
            lines.append(f"- {task}: {curve} (batch {d['batch']}, {d['wall_s']} s)")
        lines.append("")
    if "scene" in r:
        d = r["scene"]
        lines += ["## Vision pathway from init + the trainer's scene head, no decoder (held-out, %)", "",
                  f"lr {d['lr']}, batch {d['batch']}, {d['heldout_images']} held-out images.", "",
                  "| step | loss | shape given colour | count | word | wall s |", "|---|---|---|---|---|---|"]
        lines += [f"| {c['step']} | {c['loss']} | {pct(c['shape_given_colour'])} | {pct(c['count'])} | "
                  f"{pct(c['word'])} | {c['wall_s']} |" for c in d["curve"]]
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
    ap.add_argument("--scene-steps", type=int, default=0,
                    help="train the vision pathway + the trainer's scene head directly for N steps (0: skip)")
    ap.add_argument("--scene-lr", type=float, default=3e-4)
    ap.add_argument("--trace-steps", type=int, default=0,
                    help="replay the shipped training recipe this many steps, measuring vision use as it goes")
    ap.add_argument("--trace-every", type=int, default=50)
    ap.add_argument("--trace-proj-scale", type=float, default=1.0, help="scale the initial resampler.proj in the trace")
    ap.add_argument("--trace-lr", type=float, default=None, help="peak learning rate of the trace (default 1e-3)")
    ap.add_argument("--trace-kinds", default="",
                    help="comma-separated question kinds the trace trains on (default all)")
    ap.add_argument("--binding-train", type=int, default=0,
                    help="binding probes (oracle_binding.py) on N training-stream scenes per kind (0: skip)")
    ap.add_argument("--binding-test", type=int, default=500)
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
    if args.scene_steps:
        timed("scene", lambda: direct_scene_training(loaded.config, loaded.tokenizer, args.seed, args.scene_steps,
                                                     args.scene_lr))
    if args.binding_train:
        from edgevlm.calibration.oracle_binding import binding_probes

        timed("binding", lambda: binding_probes(loaded.model, loaded.config, args.binding_train, args.binding_test,
                                                args.seed))
    (args.out / "diagnosis.json").write_text(json.dumps(r, indent=2) + "\n")
    text = markdown(r)
    (args.out / "diagnosis.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
