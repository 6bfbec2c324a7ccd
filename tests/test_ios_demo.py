"""The iOS demo app (ios_demo/) and the Swift layer it compiles (runtime/platforms/apple/), checked as far
as Linux without a Swift toolchain can: every .swift file parses with tree-sitter's Swift grammar, every
C API function, struct and constant the Swift code uses is declared in c_api.h (functions with the same
number of arguments, structs built with their fields in order), project.yml names files that exist and
the folder `edgevlm bundle` writes, and the result-JSON keys and vision-runtime names the app reads are
the ones the C++ core writes. ios_demo/README.md says what this leaves unexercised."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ts = pytest.importorskip("tree_sitter", reason="pip install -e '.[test]' (tree-sitter, tree-sitter-swift)")
tree_sitter_swift = pytest.importorskip("tree_sitter_swift", reason="pip install -e '.[test]'")

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "ios_demo"
APPLE = REPO / "runtime" / "platforms" / "apple"
HEADER = REPO / "runtime" / "include" / "edgevlm" / "c_api.h"
SRC = REPO / "runtime" / "src"
SWIFT_FILES = sorted([*DEMO.rglob("*.swift"), *APPLE.rglob("*.swift")])


def parse(source: bytes):
    return ts.Parser(ts.Language(tree_sitter_swift.language())).parse(source)


def nodes(node):
    yield node
    for child in node.children:
        yield from nodes(child)


def syntax_errors(source: bytes) -> list[str]:
    """Every ERROR or MISSING node, as `line:column type text`."""
    return [f"{n.start_point[0] + 1}:{n.start_point[1] + 1} {'MISSING' if n.is_missing else 'ERROR'} "
            f"{n.text.decode(errors='replace')[:60]!r}"
            for n in nodes(parse(source).root_node) if n.is_error or n.is_missing]


# ---- syntax -------------------------------------------------------------------------------------------

def test_the_app_has_its_swift_sources():
    names = {p.name for p in SWIFT_FILES}
    assert {"EdgeVLM.swift", "EdgeVLMDemoApp.swift", "ContentView.swift", "DemoModel.swift",
            "StatsFormatter.swift", "ManifestSummary.swift", "RunnerResult.swift"} <= names


@pytest.mark.parametrize("path", SWIFT_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_swift_file_parses(path):
    assert syntax_errors(path.read_bytes()) == []


@pytest.mark.parametrize("broken", [
    b"func f( { }",                                           # unclosed parameter list
    b"struct S { let x: Int = }",                             # missing expression
    b"let s = edgevlm_open(path, &options, &handle\n",        # unclosed call
    b"Task { for await piece in pieces { answer += piece }",  # unclosed closure
])
def test_the_syntax_check_rejects_broken_swift(broken):
    assert syntax_errors(broken)


# ---- the C API as Swift sees it --------------------------------------------------------------------------

def header_declarations() -> tuple[dict[str, int], dict[str, list[str]], set[str]]:
    """c_api.h's functions (name -> parameter count), structs (name -> fields in order), enum constants."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    functions = {}
    for name, params in re.findall(r"^[\w\s\*]*?\b(edgevlm_\w+)\s*\(([^;{]*?)\)\s*;", text, flags=re.M | re.S):
        params = params.strip()
        functions[name] = 0 if params in ("", "void") else params.count(",") + 1
    structs = {}
    for body, name in re.findall(r"typedef struct\s*\{(.*?)\}\s*(edgevlm_\w+)\s*;", text, flags=re.S):
        fields = []
        for decl in filter(None, (d.strip() for d in body.split(";"))):
            first, *more = decl.split(",")
            fields.append(re.findall(r"\w+", first)[-1])
            fields += [re.findall(r"\w+", m)[-1] for m in more]
        structs[name] = fields
    constants = set(re.findall(r"\b(EDGEVLM_[A-Z0-9_]+)\s*=", text))
    return functions, structs, constants


def swift_c_calls():
    """(file, line, callee, argument labels) of every call of an edgevlm_* name in the Swift files."""
    for path in SWIFT_FILES:
        for n in nodes(parse(path.read_bytes()).root_node):
            callee = n.children[0] if n.type == "call_expression" and n.children else None
            if callee is None or callee.type != "simple_identifier" or not callee.text.startswith(b"edgevlm_"):
                continue
            suffix = next(c for c in n.children if c.type == "call_suffix")
            arguments = [c for c in nodes(suffix) if c.type == "value_argument" and c.parent.parent == suffix]
            labels = [next((x.text.decode() for x in a.children if x.type == "value_argument_label"), None)
                      for a in arguments]
            yield path.name, n.start_point[0] + 1, callee.text.decode(), labels


def test_the_header_is_read():
    functions, structs, constants = header_declarations()
    assert functions["edgevlm_run"] == 8 and functions["edgevlm_last_error"] == 0
    assert structs["edgevlm_image"] == ["pixels", "width", "height", "row_bytes", "format"]
    assert {"EDGEVLM_OK", "EDGEVLM_PIXELS_RGBA8"} <= constants


def test_swift_calls_the_c_api_as_declared():
    functions, structs, _ = header_declarations()
    calls = list(swift_c_calls())
    assert {c[2] for c in calls} >= {"edgevlm_open", "edgevlm_run", "edgevlm_close", "edgevlm_free_string"}
    wrong = []
    for file, line, name, labels in calls:
        if name in functions:
            if len(labels) != functions[name] or any(labels):
                wrong.append(f"{file}:{line} {name} takes {functions[name]} unlabelled arguments, given {labels}")
        elif name in structs:  # a C struct's memberwise init: none, or every field in order
            if labels and labels != structs[name]:
                wrong.append(f"{file}:{line} {name}({', '.join(map(str, labels))}:), the struct is {structs[name]}")
        else:
            wrong.append(f"{file}:{line} {name} is not declared in c_api.h")
    assert wrong == []


def test_swift_uses_only_declared_constants():
    _, _, constants = header_declarations()
    used = {name for p in SWIFT_FILES for name in re.findall(r"\bEDGEVLM_[A-Z0-9_]+\b", p.read_text())}
    assert used and used <= constants, used - constants


def test_the_module_map_points_at_the_header():
    modulemap = (APPLE / "CEdgeVLM" / "module.modulemap").read_text()
    header = re.search(r'header "([^"]+)"', modulemap).group(1)
    assert (APPLE / "CEdgeVLM" / header).resolve() == HEADER.resolve()


# ---- project.yml -------------------------------------------------------------------------------------------

def app_target() -> dict:
    return yaml.safe_load((DEMO / "project.yml").read_text())["targets"]["EdgeVLMDemo"]


def test_project_sources_exist_and_cover_the_app():
    target = app_target()
    sources = [s if isinstance(s, dict) else {"path": s} for s in target["sources"]]
    missing = [s["path"] for s in sources if not s.get("optional") and not (DEMO / s["path"]).exists()]
    assert missing == []
    compiled = {(DEMO / s["path"]).resolve() for s in sources if not s.get("optional")}
    for swift in SWIFT_FILES:
        if DEMO in swift.parents or swift.name == "EdgeVLM.swift":
            assert swift.resolve() in compiled or any(d in swift.resolve().parents for d in compiled), swift


def test_project_settings_point_at_the_runtime():
    target = app_target()
    settings = target["settings"]["base"]
    include = settings["SWIFT_INCLUDE_PATHS"].replace("$(SRCROOT)", str(DEMO))
    assert (Path(include) / "module.modulemap").is_file()
    framework = target["dependencies"][0]["framework"]
    assert framework.endswith("/edgevlm.framework")  # the name the module map links
    assert settings["FRAMEWORK_SEARCH_PATHS"].replace("$(SRCROOT)/", "") == str(Path(framework).parent)


def test_the_app_reads_the_folder_edgevlm_bundle_writes():
    from edgevlm.app_bundle import LAYOUT

    models = LAYOUT["ios"][0]
    resources = [s for s in app_target()["sources"] if isinstance(s, dict) and s.get("type") == "folder"]
    assert [Path(s["path"]).name for s in resources] == [models]
    swift = (DEMO / "Sources" / "ManifestSummary.swift").read_text()
    assert f'static let resourceFolder = "{models}"' in swift


# ---- what the app reads from the C++ core -----------------------------------------------------------------

def coding_keys(swift: str, struct: str) -> set[str]:
    body = re.search(rf"struct {struct}\b.*?enum CodingKeys: String, CodingKey \{{(.*?)\}}", swift, flags=re.S)
    return set(re.findall(r'case \w+ = "(\w+)"', body.group(1)))


def test_result_keys_the_app_decodes_are_written_by_the_core():
    swift = (DEMO / "Sources" / "RunnerResult.swift").read_text()
    pipeline = (SRC / "pipeline.cpp").read_text()
    stats_json = re.search(r"std::string RunStats::to_json\(\).*?\n\}", pipeline, flags=re.S).group(0)
    result_json = re.search(r"std::string RunResult::to_json\(.*?\n\}", pipeline, flags=re.S).group(0)
    written = lambda code: set(re.findall(r'\.(?:field|key)\("(\w+)"', code))  # noqa: E731
    assert coding_keys(swift, "RunStats") and coding_keys(swift, "RunStats") <= written(stats_json)
    assert coding_keys(swift, "RunnerResult") <= written(result_json) | {"schema"}
    urn = re.search(r'field\("schema", "([^"]+)"\)', result_json).group(1)
    assert f'static let schemaURN = "{urn}"' in swift


def test_every_vision_runtime_the_core_describes_has_a_label():
    formatter = (DEMO / "Sources" / "StatsFormatter.swift").read_text()
    cases = set(re.findall(r'case "([\w-]+)"', formatter))
    engines = set()
    for source in ("vision_coreml.mm", "vision_pte.cpp", "vision_ort.cpp"):
        code = (SRC / source).read_text()
        engines.add(re.search(r'describe\(\) const override \{ return (?:std::string\()?"(\w+)', code).group(1))
    assert engines == {"coreml", "executorch", "onnxruntime"}
    coreml = (SRC / "vision_coreml.mm").read_text()
    units = set(re.findall(r'name == "([\w-]+)"', coreml))
    assert "cpu-and-ne" in units
    none = re.search(r'vision_description\(\) const \{ return vision_ \? vision_->describe\(\) : "(\w+)"',
                     (SRC / "pipeline.cpp").read_text()).group(1)
    missing = (engines | units | {none}) - cases
    assert missing == set()
