"""ONNX Runtime GenAI files beside an ONNX decoder export: `genai_config.json` + one GenAI-shaped graph.

GenAI's decoder-only model (`"type": "decoder"`, onnxruntime-genai 0.18) runs one ONNX graph that
takes `input_ids` [B, T] and optional `position_ids` [B, T] / `attention_mask`, binds one key and
one value tensor per layer (names from the `past_key_names` / `present_key_names` templates), and
returns logits [B, T, V] (or [B, 1, V] when the graph's dim 1 is statically 1: "trimmed prefill").
When the past inputs have a static sequence dim, GenAI allocates a cache of exactly that size and
binds the same buffer as past and present (`past_present_share_buffer`).

edgevlm's ONNX decoder is two graphs (`token_embedding`, then `text_decoder` over input embeddings
and an `input_pos` [1] start position, logits [1, V]), so GenAI cannot drive it directly. This
module writes a third graph that is only wiring around the two: the token embedding graph feeds
the decoder, `input_pos = position_ids[:, 0]`, logits get their [1, 1, V] shape. Weights stored
in a `.data` file stay there (the new graph references the same file); weights stored inline are
repeated inline, so a model under 1 GiB of weights pays its size once more on disk.

Only float caches (fp32, fp16): the cache tensors `past.<i>.k_cache` / `v_cache` are [1, Hkv, S, Dh]
in the model dtype, the layout GenAI allocates. An INT8/INT4 cache cannot be expressed; see
`unsupported_reason`.
"""

from __future__ import annotations

from pathlib import Path

from edgevlm.export.decoder.pte_names import TOKEN_EMBEDDING

GENAI_VERSION = "0.18.0"  # the onnxruntime-genai release this config is written for and tested with
CONFIG_FILE = "genai_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")  # GenAI reads them beside its config
EMBED_PREFIX = f"{TOKEN_EMBEDDING}/"  # keeps the embedding graph's value names apart from the decoder's
QUANTIZED_CACHE_REASON = (
    "onnxruntime-genai {version} binds exactly one key and one value tensor per layer (the past_key_names / "
    "past_value_names templates), allocated by the runtime as [batch, kv_heads, seq, head_dim] in the "
    "dtype of the first past input; its only quantized form (the kvCacheQuantizationBits provider "
    "option) is still that one tensor, each row's codes packed into uint32 words plus one extra word, an "
    "encoding of the execution provider's GroupQueryAttention kernel. edgevlm's {fmt} cache is three "
    "tensors per key and per value (uint8 codes{packing} + fp16 scale + fp16 zero point per "
    "{group}-element group{rotation}): GenAI would leave the scale and zero inputs unbound and allocate "
    "the codes with the wrong width and dtype, so no genai_config.json is written for it.")


def unsupported_reason(cache) -> str | None:
    """Why GenAI cannot run a decoder with this KVCacheSpec, or None for fp32 / fp16 caches."""
    if not cache.quantized:
        return None
    packing = " [.., Dh/2], two 4-bit codes per byte" if cache.bits == 4 else " [.., Dh]"
    rotation = ", Hadamard-rotated keys" if cache.rotate_keys else ""
    return QUANTIZED_CACHE_REASON.format(version=GENAI_VERSION, fmt=cache.format.upper(), packing=packing,
                                         group=cache.group_size, rotation=rotation)


def build_genai_graph(decoder_path: Path, embed_path: Path, out_path: Path) -> list[Path]:
    """token_embedding + text_decoder as one graph with GenAI's inputs: input_ids [1, T] and
    position_ids [1, T] (int64) plus the decoder's own past.* inputs; outputs logits [1, 1, V] and
    present.*. Returns the files written (the graph; its own .data when the inline weights of
    both graphs together would overflow protobuf's 2 GiB)."""
    import onnx
    from onnx import TensorProto, compose, helper

    from edgevlm.export.decoder.onnx_graph import EXTERNAL_DATA_BYTES

    decoder = onnx.load(str(decoder_path), load_external_data=False)
    embed = compose.add_prefix(onnx.load(str(embed_path), load_external_data=False), EMBED_PREFIX)
    merged = compose.merge_models(embed, decoder, io_map=[(f"{EMBED_PREFIX}embeddings", "embeddings")])
    graph = merged.graph
    _rename_input(graph, f"{EMBED_PREFIX}tokens", "input_ids")
    # input_pos [1] <- position_ids [1, T]: GenAI feeds positions past_len .. past_len+T-1
    pos_input = next(i for i in graph.input if i.name == "input_pos")
    graph.input.remove(pos_input)
    graph.input.insert(1, helper.make_tensor_value_info("position_ids", TensorProto.INT64, [1, "T"]))
    graph.initializer.append(helper.make_tensor("genai/first_position", TensorProto.INT64, [], [0]))
    graph.node.insert(0, helper.make_node("Gather", ["position_ids", "genai/first_position"], ["input_pos"],
                                          axis=1, name="genai/input_pos"))
    # logits [1, V] -> [1, 1, V]: the static 1 tells GenAI the graph returns the last position only
    logits = next(o for o in graph.output if o.name == "logits")
    vocab = logits.type.tensor_type.shape.dim[1].dim_value
    for node in graph.node:
        node.output[:] = ["genai/last_logits" if name == "logits" else name for name in node.output]
    graph.initializer.append(helper.make_tensor("genai/logits_axis", TensorProto.INT64, [1], [1]))
    graph.node.append(helper.make_node("Unsqueeze", ["genai/last_logits", "genai/logits_axis"], ["logits"],
                                       name="genai/logits"))
    graph.output.remove(logits)
    graph.output.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, vocab]))
    graph.name = "edgevlm_genai_decoder"
    onnx.checker.check_model(merged)
    inline = sum(len(t.raw_data) for t in graph.initializer)
    data = out_path.with_name(out_path.name + ".data")
    data.unlink(missing_ok=True)
    if inline > EXTERNAL_DATA_BYTES:  # only inline tensors move; those already in a .data file stay
        onnx.save_model(merged, str(out_path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
        return [out_path, data]
    onnx.save_model(merged, str(out_path))
    return [out_path]


def _rename_input(graph, old: str, new: str) -> None:
    for value in graph.input:
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]


def genai_config(loaded, spec, graph_file: str) -> dict:
    """genai_config.json for the graph of build_genai_graph (field names: onnxruntime-genai's
    src/config.cpp; greedy search by default, as `edgevlm run` decodes)."""
    llm, tok = loaded.config.llm, loaded.tokenizer
    eos = sorted(tok.stop_token_ids())
    bos = tok.maybe_token_id(tok.bos_token) if tok.bos_token else None
    pad = tok.maybe_token_id(tok.pad_token)
    return {
        "model": {
            "type": "decoder",  # GenAI's generic decoder-only LLM: one graph, no architecture-specific inputs
            "bos_token_id": bos if bos is not None else eos[0],
            "eos_token_id": eos if len(eos) > 1 else eos[0],
            "pad_token_id": pad if pad is not None else eos[0],
            "vocab_size": llm.vocab_size,
            "context_length": spec.max_seq_len,
            "decoder": {
                "filename": graph_file,
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "hidden_size": llm.hidden_size, "head_size": llm.resolved_head_dim,
                "num_attention_heads": llm.num_attention_heads, "num_key_value_heads": llm.num_key_value_heads,
                "num_hidden_layers": llm.num_hidden_layers,
                "inputs": {"input_ids": "input_ids", "position_ids": "position_ids",
                           "past_key_names": "past.%d.k_cache", "past_value_names": "past.%d.v_cache"},
                "outputs": {"logits": "logits",
                            "present_key_names": "present.%d.k_cache", "present_value_names": "present.%d.v_cache"},
            },
        },
        # the cache is static ([1, Hkv, max_seq_len, Dh]): one shared past/present buffer, batch 1, no beams
        "search": {"max_length": spec.max_seq_len, "past_present_share_buffer": True, "num_beams": 1,
                   "num_return_sequences": 1, "batch_size": 1, "do_sample": False, "top_k": 1, "top_p": 1.0,
                   "temperature": 1.0, "repetition_penalty": 1.0, "min_length": 0, "early_stopping": True},
    }


def write_genai_files(loaded, spec, out: Path, decoder_path: Path, embed_path: Path, model_dir: Path) -> dict:
    """Write the graph, genai_config.json and the tokenizer files GenAI reads beside it; returns the
    manifest's `genai` block (the files also go into the decoder entry's extra_files)."""
    import json
    import shutil

    out = Path(out)
    graph_path = out / decoder_path.name.replace(".onnx", ".genai.onnx")
    files = build_genai_graph(decoder_path, embed_path, graph_path)
    config_path = out / CONFIG_FILE
    config_path.write_text(json.dumps(genai_config(loaded, spec, graph_path.name), indent=2, sort_keys=True) + "\n")
    for name in TOKENIZER_FILES:  # the artifact's tokenizer/ copies stay what `edgevlm run` reads
        shutil.copy(Path(model_dir) / name, out / name)
    return {"written": True, "runtime": f"onnxruntime-genai>={GENAI_VERSION}", "config": CONFIG_FILE,
            "graph": graph_path.name, "files": [p.name for p in files] + [CONFIG_FILE, *TOKENIZER_FILES],
            "usage": f"onnxruntime_genai.Model('<artifact folder>') reads {CONFIG_FILE}; text-only "
                     "(image embeddings need the two-graph text_decoder path)"}
