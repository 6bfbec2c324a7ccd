"""`edgevlm recipes`: every recipe `export --recipe` accepts, with what it builds."""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from pathlib import Path


def recipe_names() -> list[str]:
    """Names for help texts, from the registry (built-in YAML files and $EDGEVLM_RECIPES)."""
    from edgevlm.export.recipes import known_recipes

    return sorted(known_recipes())


def recipe_help() -> str:
    return (f"recipe name ({', '.join(recipe_names())}; `edgevlm recipes` describes them) "
            "or the path of a recipe YAML file")


def set_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one recipe field (repeatable), e.g. decoder.kv_cache=int8, "
                        "vision.max_patches=256, calibration.images=8; checked like the YAML")


def recipes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, help="also write the recipes (name, file, targets, description) as JSON here")


def describe_recipes() -> list[dict]:
    """One entry per known recipe; a user recipe that does not parse is listed with its problem."""
    from edgevlm.errors import EdgeVLMError
    from edgevlm.export.recipes import known_recipes, load_recipe

    entries = []
    for name, path in sorted(known_recipes().items()):
        entry = {"name": name, "file": str(path)}
        try:
            recipe = load_recipe(name)
        except EdgeVLMError as e:
            entries.append(entry | {"error": e.problem})
            continue
        entry["vision"] = [f"{t.backend} {t.precision}" for t in recipe.vision]
        entry["decoder"] = [f"{t.backend} {t.precision}" for t in recipe.decoder]
        entry["description"] = recipe.description
        entries.append(entry)
    return entries


def recipes(args) -> int:
    entries = describe_recipes()
    width = min(shutil.get_terminal_size((80, 24)).columns, 100)
    for entry in entries:
        print(entry["name"])
        if "error" in entry:
            print(textwrap.fill(f"cannot be read: {entry['error']}", width, initial_indent="  ",
                                subsequent_indent="    "))
            continue
        targets = f"vision: {', '.join(entry['vision']) or 'none'}; decoder: {', '.join(entry['decoder']) or 'none'}"
        for text in (targets, entry["description"]):
            print(textwrap.fill(text, width, initial_indent="  ", subsequent_indent="  "))
    print("\nuse: edgevlm export --model DIR --recipe NAME --out DIR [--set section.field=value]\n"
          "     (--recipe also takes the path of a recipe YAML file)")
    if args.json:
        args.json.write_text(json.dumps(entries, indent=2) + "\n")
    return 0
