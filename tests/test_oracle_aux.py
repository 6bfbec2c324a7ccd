"""The oracle trainer's auxiliary scene head (calibration/oracle_aux.py) and its batch loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from edgevlm.calibration import oracle_aux, vqa


def test_scene_targets_describe_the_scene():
    for s in vqa.dataset("heldout", 40):
        targets = oracle_aux.scene_targets(s.scene)
        present = {oracle_aux.PAIRS[i] for i in torch.nonzero(targets["pairs"]).flatten().tolist()}
        assert present == {(sh.colour, sh.kind) for sh in s.scene.shapes}
        assert int(targets["count"]) == len(s.scene.shapes)
        for sh in s.scene.shapes:
            i = oracle_aux.COLOURS.index(sh.colour)
            assert targets["x_mask"][i] == 1 and targets["x_centre"][i] == pytest.approx(sh.centre[0] / s.scene.size[0])
        assert int(targets["x_mask"].sum()) == len(s.scene.shapes)
        word = int(targets["word"])
        assert (vqa.WORDS[word] if word < len(vqa.WORDS) else None) == s.scene.text


@pytest.fixture(scope="module")
def tiny_batch():
    from edgevlm.calibration.train_oracle import build_model, build_tokenizer, encode_sample

    torch.manual_seed(0)
    config, model = build_model(0)
    tokenizer = build_tokenizer()
    batch = [encode_sample(vqa.sample("train", i), tokenizer, config) for i in range(3)]
    return config, model, batch


def test_answer_loss_is_the_cross_entropy_of_the_full_logits(tiny_batch):
    """batch_loss projects only the labelled positions onto the vocabulary: the same loss as the
    model's own forward over every position."""
    from edgevlm.calibration.train_oracle import batch_loss

    config, model, batch = tiny_batch
    answer, scene, _ = batch_loss(model, batch)
    assert float(scene) == 0.0  # no head, no scene loss
    item = batch[0]
    vision = model.encode_images(item["pixel_values"], item["tgt_sizes"])
    embeds = model.embed_inputs(item["ids"], vision, item["bounds"])[None]
    logits = model.llm(inputs_embeds=embeds).logits[0]
    single, _, _ = batch_loss(model, batch[:1])
    assert torch.allclose(single, F.cross_entropy(logits, item["labels"], ignore_index=-100), atol=1e-5)
    assert torch.isfinite(answer)


def test_scene_loss_trains_the_vision_pathway_only_through_its_head(tiny_batch):
    from edgevlm.calibration.train_oracle import batch_loss

    config, model, batch = tiny_batch
    head = oracle_aux.SceneHead(config.query_num, config.llm.hidden_size)
    model.zero_grad(set_to_none=True)
    _, scene, _ = batch_loss(model, batch, head)
    scene.backward()
    assert torch.isfinite(scene) and float(scene) > 0
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("vpm."))
    assert all(g is None for n, g in grads.items() if n.startswith("llm."))  # the decoder is untouched
    assert head.pairs.weight.grad.abs().sum() > 0 and head.word.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_direct_scene_training_reports_a_curve():
    """`oracle_diagnosis --scene-steps N`: the vision pathway + scene head alone, scored on held-out images."""
    from edgevlm.calibration.oracle_experiments import direct_scene_training
    from edgevlm.calibration.train_oracle import build_model, build_tokenizer

    config, _ = build_model(0)
    result = direct_scene_training(config, build_tokenizer(), seed=0, steps=2, lr=3e-4, n_test=4, batch=2)
    (point,) = result["curve"]
    assert point["step"] == 2 and point["loss"] > 0
    assert all(0 <= point[k] <= 1 for k in ("shape_given_colour", "count", "word"))


def test_row_head_reads_row_content_not_row_order(tiny_batch):
    """`rows` pools one per-row MLP, so shuffling a view's rows changes nothing it reads; the flat
    head reads which row holds what, and a shuffle changes its logits."""
    config, _, _ = tiny_batch
    torch.manual_seed(1)
    vision = torch.randn(5, config.query_num, config.llm.hidden_size)
    shuffled = vision[:, torch.randperm(config.query_num)]
    views = [2, 3]
    rows = oracle_aux.SceneHead(config.query_num, config.llm.hidden_size, "rows")
    flat = oracle_aux.SceneHead(config.query_num, config.llm.hidden_size, "flat")
    for key, value in rows.logits(vision, views).items():
        assert value.shape[0] == len(views)
        torch.testing.assert_close(value, rows.logits(shuffled, views)[key])
    assert not torch.allclose(flat.logits(vision, views)["pairs"], flat.logits(shuffled, views)["pairs"])
    # `both`: the shapes read from row content, the word from the row layout
    both = oracle_aux.SceneHead(config.query_num, config.llm.hidden_size, "both")
    for key in ("pairs", "count", "x_centre"):
        torch.testing.assert_close(both.logits(vision, views)[key], both.logits(shuffled, views)[key])
    assert not torch.allclose(both.logits(vision, views)["word"], both.logits(shuffled, views)["word"])
    with pytest.raises(ValueError, match="unknown scene head 'grid'; known: flat, rows, both"):
        oracle_aux.SceneHead(config.query_num, config.llm.hidden_size, "grid")


def test_kind_weights_shape_the_training_stream_only():
    weighted = [vqa.sample("train", i, kinds=("count", "position"), weights=(1.0, 3.0)).kind for i in range(2000)]
    share = weighted.count("position") / len(weighted)
    assert 0.72 <= share <= 0.78, share  # 0.75; 2000 draws: sd ~1 point


def test_reference_targets_name_the_one_object_each_question_token_means(tiny_batch):
    """The grounding targets: a question token that names one shape of the scene (its colour, or its
    kind when no other shape has it) gets that shape's colour, kind and x-centre; nothing else does."""
    from edgevlm.calibration import oracle_reference
    from edgevlm.calibration.train_oracle import build_tokenizer, encode_sample

    config, _, _ = tiny_batch
    tokenizer = build_tokenizer()
    named_kinds = {"colour": 1, "shape": 1, "position": 2}
    for i in range(60):
        s = vqa.sample("heldout", i)
        item = encode_sample(s, tokenizer, config)
        refs = item["refs"]
        assert len(refs) == named_kinds.get(s.kind, 0), (s.question, refs)
        for position, colour, kind, x in refs.tolist():
            word = tokenizer.decode([int(item["ids"][int(position)])]).strip()
            assert f" {word}" in s.question
            shape = next(sh for sh in s.scene.shapes if word in (sh.colour, sh.kind))
            assert (oracle_reference.COLOURS[int(colour)], oracle_reference.KINDS[int(kind)]) == (shape.colour, shape.kind)
            assert x == pytest.approx(shape.centre[0] / s.scene.size[0])
        if s.kind == "position":  # the answer follows from the two targets' x-centres
            (_, _, _, xa), (_, _, _, xb) = refs.tolist()
            assert (xa < xb) == (s.answer == "left")


def test_reference_loss_trains_the_decoder_up_to_its_layer(tiny_batch):
    from edgevlm.calibration.oracle_reference import ReferenceHead
    from edgevlm.calibration.train_oracle import batch_loss

    config, model, batch = tiny_batch
    assert any(len(b["refs"]) for b in batch)  # training sample 0 asks the colour of a named shape
    head = ReferenceHead(config.llm.hidden_size, layer=1)
    model.zero_grad(set_to_none=True)
    _, _, reference = batch_loss(model, batch, reference_head=head)
    reference.backward()
    assert torch.isfinite(reference) and float(reference) > 0
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["llm.model.layers.0.self_attn.q_proj.weight"].abs().sum() > 0
    assert all(g is None or g.abs().sum() == 0 for n, g in grads.items() if n.startswith("llm.model.layers.1."))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("vpm."))
    model.zero_grad(set_to_none=True)
