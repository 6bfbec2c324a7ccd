"""`edgevlm report`: from the real results of one tiny pipeline (quality exports and scores a recipe
on the shipped oracle, then verify and bench that export) and from synthetic phone results (power,
several contexts, a roofline). Every figure is present, the HTML and Markdown show the JSON's numbers,
a regression beyond the runs' own spread exits 1 naming both values, a change within it does not,
and runs of other devices or artifacts are not compared but said why."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest
import yaml

from edgevlm.cli.main import main
from edgevlm.reports.plots import FIGURES
from edgevlm.reports.text import fmt_value
from tests.report_samples import SHA_A, SHA_B, device_result, write_json as _write

FIGURE_IDS = [fid for fid, _ in FIGURES]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """quality (export + score), verify and bench on one small export: the four real result kinds."""
    root = tmp_path_factory.mktemp("report-pipeline")
    recipe = root / "recipe.yaml"
    vision = [{"backend": "ort", "precision": p, "max_patches": 128, "batch": 1,
               "options": {"execution_provider": "CPUExecutionProvider"}} for p in ("fp32", "int8")]
    recipe.write_text(yaml.safe_dump({
        "name": "report-test", "vision": vision,
        "decoder": [{"backend": "executorch", "weights": "fp32", "kv_cache": "fp32", "max_seq_len": 256}],
        # wide bounds: 4 samples move accuracy in 25-point steps; gate failures are tested on a copy below
        "quality": {"max_accuracy_drop": {"vision": 100.0, "decoder": 100.0, "end_to_end": 100.0}}}))
    quality = root / "quality"
    assert main(["quality", "--recipe", str(recipe), "--samples", "4", "--max-patches", "128", "--no-ablation",
                 "--out", str(quality)]) == 0
    export = quality / "report-test"
    assert main(["verify", str(export), "--json", str(root / "verify.json")]) == 0
    assert main(["bench", "--artifacts", str(export), "--runs", "3", "--warmup", "1",
                 "--json", str(root / "bench.json")]) == 0
    return root


def _report(tmp_path, *args) -> tuple[int, dict, str, str]:
    out = tmp_path / "out"
    code = main(["report", *map(str, args), "--out", str(out)])
    if not (out / "report.json").exists():
        return code, {}, "", ""
    return (code, json.loads((out / "report.json").read_text()), (out / "report.html").read_text(),
            (out / "report.md").read_text())


def _self_contained(html: str) -> None:
    assert "<script" not in html and "<link" not in html and "<img" not in html
    # the only URLs left are the SVG namespace names (never fetched)
    namespaces = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert set(re.findall(r"https?://[^\"' <]+", html)) <= namespaces


def _numbers_shown(doc: dict, html: str, markdown: str) -> None:
    for m in doc["metrics"]:
        if m["section"] == "verify":
            continue
        shown = fmt_value(m["value"], m["unit"]) if m["value"] is not None else f"n/a ({m['unavailable']})"
        assert shown in markdown, m["id"]
        assert shown.replace("&", "&amp;") in html.replace("&#x27;", "'").replace("&quot;", '"'), m["id"]


def test_report_from_the_real_tiny_pipeline(pipeline, tmp_path):
    code, doc, html, markdown = _report(tmp_path, pipeline / "quality", pipeline / "bench.json",
                                        pipeline / "verify.json")
    assert code == 0 and doc["status"] == "pass"
    assert {s["kind"] for s in doc["summary"]["sources"]} == {"bench", "quality", "verify"}
    # the export folder holds manifest.json, genai configs...: listed as skipped, not an error
    assert any("manifest.json" in s for s in doc["skipped"])
    for fid in FIGURE_IDS:
        assert f'<figure id="plot-{fid}">' in html
    plotted = {f["id"]: f for f in doc["figures"]}
    for fid in ("vision-latency", "decoder-throughput", "peak-memory", "accuracy-drop", "layer-sqnr", "kv-error"):
        assert plotted[fid]["plotted"], fid
        assert re.search(rf'<figure id="plot-{fid}"><figcaption>[^<]*</figcaption><svg', html), fid
    # the host bench samples no power: the energy plot says why instead of drawing zeros
    assert not plotted["energy"]["plotted"] and "do not sample power" in plotted["energy"]["note"]
    assert "do not sample power" in html
    _self_contained(html)
    _numbers_shown(doc, html, markdown)
    # the numbers are the result files' own
    bench = json.loads((pipeline / "bench.json").read_text())
    vision = next(r for r in bench[0]["results"] if r["runtime"] == "ort:int8")
    m = next(m for m in doc["metrics"] if m["id"].startswith("vision latency ort:int8"))
    assert m["value"] == vision["metrics"]["median_ms"] and m["spread"]["p90"] == vision["metrics"]["p90_ms"]
    quality = json.loads((pipeline / "quality" / "quality.json").read_text())
    assert [m["value"] for m in doc["metrics"] if m["section"] == "accuracy"] == [r["drop_points"] for r in
                                                                                 quality["rows"]]
    assert doc["summary"]["manifest_sha256"] == [bench[0]["artifacts"]["manifest_sha256"]]
    assert doc["summary"]["toolchain"]["onnxruntime"] == bench[0]["runtime_versions"]["onnxruntime"]
    assert "Verify: 14/14 checks pass" in markdown or re.search(r"Verify: (\d+)/\1 checks pass", markdown)


def test_real_run_against_itself_is_within_noise(pipeline, tmp_path):
    results = [pipeline / "bench.json", pipeline / "quality" / "quality.json"]
    code, doc, _, markdown = _report(tmp_path, *results, "--baseline", *results)
    assert code == 0 and doc["failures"] == []
    verdicts = {c["metric"]: c["verdict"] for c in doc["baseline"]["comparisons"]}
    assert verdicts and set(verdicts.values()) <= {"within noise", "not gated"}
    assert "within noise" in verdicts.values() and "### Against the baseline" in markdown


def test_a_failed_quality_gate_fails_the_report(pipeline, tmp_path):
    quality = json.loads((pipeline / "quality" / "quality.json").read_text())
    row = quality["rows"][0]
    row.update(drop_points=25.0, status="fail", gate=row["gate"] | {"describe": "accuracy drop <= 1 points"})
    quality["status"] = "fail"
    path = tmp_path / "quality.json"
    path.write_text(json.dumps(quality))
    code, doc, _, markdown = _report(tmp_path, path)
    assert code == 1
    (failure,) = doc["failures"]
    assert "+25.0 points" in failure["why"] and "accuracy drop <= 1 points" in failure["why"]
    assert failure["why"] in markdown


# -- synthetic phone results -------------------------------------------------------------------------------


def test_synthetic_device_report_plots_everything_measured(tmp_path):
    path = _write(tmp_path / "phone.json", device_result())
    code, doc, html, markdown = _report(tmp_path, path)
    assert code == 0
    plotted = {f["id"]: f["plotted"] for f in doc["figures"]}
    assert plotted["energy"] and plotted["vision-latency"] and plotted["decoder-throughput"] and plotted["peak-memory"]
    assert not plotted["accuracy-drop"] and "n/a (" in html  # no quality result: said so
    decoder_svg = html.split('<figure id="plot-decoder-throughput">')[1].split("</figure>")[0]
    assert "roofline executorch:int4-kvint4" in decoder_svg  # the roofline line on the decode plot
    # a measured-unavailable value is a reason, never a zero
    per_token = next(m for m in doc["metrics"] if m["id"] == "energy per token @4096")
    assert per_token["value"] is None and per_token["unavailable"] == "phase too short"
    assert "n/a (phase too short)" in markdown and "n/a (the phone has no QNN HTP backend library)" in markdown
    _self_contained(html)
    _numbers_shown(doc, html, markdown)


def test_a_decode_regression_beyond_the_noise_band_exits_1(tmp_path, capsys):
    baseline = _write(tmp_path / "base.json", device_result(decode_ms=40.0))
    current = _write(tmp_path / "cur.json", device_result(decode_ms=46.0))  # 15% slower, spread ~1 ms
    code, doc, html, markdown = _report(tmp_path, current, "--baseline", baseline)
    assert code == 1
    failed = {f["metric"]: f for f in doc["failures"]}
    f = failed["decode executorch:int4-kvint4 @128"]
    assert f["current"] == pytest.approx(1000 / 46.0) and f["baseline"] == pytest.approx(1000 / 40.0)
    assert f"{f['current']:.4g} tok/s" in f["why"] and f"{f['baseline']:.4g} tok/s" in f["why"]
    assert f"FAIL {f['why']}" in capsys.readouterr().out
    row = next(c for c in doc["baseline"]["comparisons"] if c["metric"] == f["metric"])
    assert row["change_pct"] == pytest.approx(100 * (40 / 46 - 1)) and "↓ -13.0 %" in markdown
    assert "vision latency ort:int8 (onnxruntime xnnpack) slice 448x448" not in failed  # unchanged


def test_a_change_within_the_runs_spread_passes(tmp_path):
    baseline = _write(tmp_path / "base.json", device_result(decode_ms=40.0, vision_ms=120.0))
    current = _write(tmp_path / "cur.json", device_result(decode_ms=40.6, vision_ms=122.0))
    code, doc, _, markdown = _report(tmp_path, current, "--baseline", baseline)
    assert code == 0 and doc["failures"] == []
    by_metric = {c["metric"]: c for c in doc["baseline"]["comparisons"]}
    decode = by_metric["decode executorch:int4-kvint4 @128"]
    assert decode["verdict"] == "within noise" and decode["change"] < 0 and abs(decode["change"]) <= decode["band"]
    assert by_metric["vision latency ort:int8 (onnxruntime xnnpack) slice 448x448"]["verdict"] == "within noise"
    assert by_metric["prefill executorch:int4-kvint4 @128"]["verdict"] == "not gated"  # one median per round
    # the same slowdown is a regression when the band is tightened (noise=0.1: a tenth of the spread)
    code, doc, _, _ = _report(tmp_path / "tight", current, "--baseline", baseline, "--threshold", "noise=0.1")
    assert code == 1 and "decode executorch:int4-kvint4 @128" in {f["metric"] for f in doc["failures"]}


def test_runs_of_other_devices_or_artifacts_are_not_compared(tmp_path):
    baseline = _write(tmp_path / "base.json", device_result(model="Galaxy S24", decode_ms=20.0))
    current = _write(tmp_path / "cur.json", device_result(decode_ms=60.0))  # 3x slower, but another phone
    code, doc, _, markdown = _report(tmp_path, current, "--baseline", baseline)
    assert code == 0 and doc["baseline"]["comparisons"] == []
    (reason,) = doc["baseline"]["not_comparable"]
    assert reason["why"] == "different devices: adb: Pixel 8 Pro vs baseline adb: Galaxy S24"
    assert "decode executorch:int4-kvint4 @128" in reason["metrics"] and reason["why"] in markdown
    other = _write(tmp_path / "other.json", device_result(manifest=SHA_B))
    code, doc, _, _ = _report(tmp_path / "b", current, "--baseline", other)
    assert code == 0 and doc["baseline"]["not_comparable"][0]["why"] == \
        f"different artifact bytes: {SHA_A} vs baseline {SHA_B}"


def test_memory_gate_is_relative(tmp_path):
    heavier = device_result()
    heavier["results"][1]["peak_memory_bytes"] = 1600 * 2**20  # +14 %, default limit 10 %
    code, doc, _, _ = _report(tmp_path, _write(tmp_path / "cur.json", heavier), "--baseline",
                              _write(tmp_path / "base.json", device_result()))
    assert code == 1
    (failure,) = doc["failures"]
    assert failure["metric"] == "peak memory decoder executorch:int4-kvint4"
    assert "1600.0 MiB vs baseline 1400.0 MiB" in failure["why"]


def test_bad_inputs_exit_2_naming_the_file(tmp_path, capsys):
    unknown = tmp_path / "notes.json"
    unknown.write_text('{"hello": 1}')
    assert main(["report", str(unknown), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(unknown) in err and "edgevlm.bench/2" in err and "edgevlm.quality/1" in err
    broken = device_result()
    del broken["results"][0]["metrics"]
    assert main(["report", str(_write(tmp_path / "b.json", broken)), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "malformed edgevlm.bench/2 result at results/0" in err and "'metrics' is a required property" in err
    (tmp_path / "junk.json").write_text("{not json")
    assert main(["report", str(tmp_path / "junk.json"), "--out", str(tmp_path / "o")]) == 2
    assert "not JSON" in capsys.readouterr().err
    good = _write(tmp_path / "g.json", device_result())
    assert main(["report", str(good), "--out", str(tmp_path / "o"), "--threshold", "latency=3"]) == 2
    assert "unknown metric 'latency'" in capsys.readouterr().err
    assert main(["report", str(good), "--out", str(tmp_path / "o"), "--format", "pdf"]) == 2
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_json_flag_prints_the_validated_document(tmp_path, capsys):
    from edgevlm.reports.document import validate_report

    good = _write(tmp_path / "g.json", device_result())
    assert main(["report", str(good), "--out", str(tmp_path / "o"), "--format", "md", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    validate_report(doc)
    assert doc["schema"] == "edgevlm.report/1" and [p.name for p in (tmp_path / "o").iterdir()] == ["report.md"]
    broken = copy.deepcopy(doc)
    broken["metrics"][0]["value"] = None  # a number dropped without its reason: the schema refuses it
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)


def test_a_failed_verify_check_fails_the_report(tmp_path):
    checks = [{"artifact": "v.onnx", "check": "checksum", "status": "pass", "detail": "57e18ec22dc2", "metrics": {}},
              {"artifact": "v.onnx", "check": "numerics", "status": "fail", "detail": "max abs error 0.3 > 1e-3",
               "metrics": {}}]
    code, doc, html, markdown = _report(tmp_path, _write(tmp_path / "verify.json", checks))
    assert code == 1 and doc["failures"] == [{"metric": "verify v.onnx: numerics",
                                              "why": "verify check failed: max abs error 0.3 > 1e-3"}]
    assert "Verify: 1/2 checks pass: failed verify v.onnx: numerics" in markdown
    assert "max abs error 0.3 &gt; 1e-3" in html


def test_a_folder_without_results_is_an_input_error(tmp_path, capsys):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"artifacts": []}')
    assert main(["report", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert f"{folder}: no result files in this folder (1 JSON files" in capsys.readouterr().err


def test_metrics_on_one_side_only_are_listed(tmp_path):
    current = device_result()
    current["results"].pop(0)  # the vision runtime was not benchmarked this time
    code, doc, _, markdown = _report(tmp_path, _write(tmp_path / "cur.json", current), "--baseline",
                                     _write(tmp_path / "base.json", device_result()))
    assert code == 0
    (only,) = doc["baseline"]["not_comparable"]
    assert only["why"] == "in the baseline only (the current results do not have it)"
    assert set(only["metrics"]) == {"vision latency ort:int8 (onnxruntime xnnpack) slice 448x448",
                                    "peak memory vision ort:int8 (onnxruntime xnnpack)"}
    assert "Not compared (2 metrics): in the baseline only" in markdown


def test_device_bench_summary_table_renders_from_reports(capsys):
    from edgevlm.reports.bench_tables import print_device_report

    report = device_result()
    report["input"] = {"end_to_end": {"text": "a red circle"}}
    print_device_report(report)
    out = capsys.readouterr().out
    assert "2.6 on Pixel 8 Pro" in out and "not run:" in out  # (rich wraps the reason at 80 columns)
    assert "energy per image 0.4 J" in out and "answer: 'a red circle'" in out
