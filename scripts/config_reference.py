"""docs/configuration.md, generated from workflow/schemas/config.schema.yaml.

    python scripts/config_reference.py           # rewrite docs/configuration.md
    python scripts/config_reference.py --check   # exit 1 when the page differs from the schema's

The schema is the one source of truth: it validates every configuration
before Snakemake plans a job, and its descriptions, types, defaults and bounds
are the reference. tests/test_docs_config_reference.py fails when the
committed page is not what this script writes from the committed schema.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PAGE = REPO / "docs" / "configuration.md"

HEADER = """\
# Configuration reference

```bash
python scripts/config_reference.py   # regenerate this page after editing the schema
```

<!-- Generated from workflow/schemas/config.schema.yaml by scripts/config_reference.py: do not edit by
hand; edit the schema's descriptions and regenerate (tests/test_docs_config_reference.py checks). -->

`config.yaml` is the published study; presets in `presets/` are overlays:
`--configfile config.yaml presets/demo.yaml` merges the second file into the first
(nested keys merge, lists replace). Snakemake validates the merged configuration
against `workflow/schemas/config.schema.yaml` before planning any job: an unknown
key, an unknown survey, a value outside the bounds below stops the workflow with a
message naming the key. Defaults are filled in from the schema.

Each training job runs with one compute thread (`threads: 1`, `rbda train
--threads 1`): on CPU, two 1-thread jobs did 1.4x the work of one 2-thread job,
so Snakemake runs as many jobs as there are cores. Training jobs declare `gpu`
(1 when `training.device` is `cuda`; the Slurm profile always asks for one GPU
per training job), `mem_mb` and `runtime`. Changing a `training` value re-runs
the training (Snakemake's `params` trigger), and so does editing the learning
core's code (`rerun_on_code_change`); changing only `shots` or `lambdas` adds runs.

"""


def train_option_help() -> dict[str, str]:
    """``rbda train``'s option help by destination, without its default (the schema gives it).

    The schema passes `training` to `rbda train` 1:1, so where a training key has
    no description of its own, its option's help is the reference.
    """
    from rbda.cli import build_parser  # the package's parser: rbda must be importable (PYTHONPATH=src)

    parser = build_parser()
    train = next(action for action in parser._subparsers._group_actions[0].choices.items()
                 if action[0] == "train")[1]
    helps = {}
    for action in train._actions:
        if action.help and action.help != argparse.SUPPRESS and action.option_strings:
            text = action.help % {**vars(action), "prog": "rbda train"} if "%" in action.help else action.help
            text = re.sub(r";? *default:? [^;]*$", "", " ".join(text.split())).rstrip(" ;")
            text = re.sub(r" \((?:in [\[(].*|[<>]=? ?[-0-9.]+)\)$", "", text)  # bounds: the type column has them
            helps[action.dest] = f"`rbda train {action.option_strings[-1]}`: {text}"
    return helps


def resolve(node: dict, schema: dict) -> dict:
    """``node`` with a local ``$ref`` replaced by its definition (the node's own keys win)."""
    ref = node.get("$ref")
    if ref is None:
        return node
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise ValueError(f"{SCHEMA.name}: only local $defs references are supported, not {ref!r}")
    target = schema["$defs"][ref.removeprefix(prefix)]
    return {**resolve(target, schema), **{k: v for k, v in node.items() if k != "$ref"}}


def code(value) -> str:
    return "`" + json.dumps(value, ensure_ascii=False) + "`" if not isinstance(value, str) else f"`{value}`"


def type_text(node: dict, schema: dict) -> str:
    """What a value may be: type, enum, alternatives, list items, with their bounds."""
    node = resolve(node, schema)
    if "const" in node:
        return f"= {code(node['const'])}"
    if "enum" in node:
        return "one of " + ", ".join(code(v) for v in node["enum"] if v is not None) + (
            " or null" if None in node["enum"] else "")
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(type_text(option, schema) for option in node.get("oneOf", node.get("anyOf")))
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    parts = []
    for kind in types:
        if kind == "array":
            items = type_text(node.get("items", {}), schema)
            parts.append(f"list of ({items})" if " " in items else f"list of {items}" if items else "list")
        elif kind == "object" and "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
            parts.append("mapping")
        else:
            parts.append(kind)
    text = " or ".join(parts)
    bounds = bounds_text(node)
    return f"{text} ({bounds})" if bounds and text else text or bounds


def bounds_text(node: dict) -> str:
    bounds = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in node:
            bounds.append(f"{sign} {node[key]}")
    if "minItems" in node:
        bounds.append(f"at least {node['minItems']} item{'s' * (node['minItems'] != 1)}")
    if node.get("uniqueItems"):
        bounds.append("no repeats")
    if "minProperties" in node:
        bounds.append(f"at least {node['minProperties']} entries")
    if "minLength" in node:
        bounds.append(f"at least {node['minLength']} character{'s' * (node['minLength'] != 1)}")
    if "pattern" in node:
        bounds.append(f"matching `{node['pattern']}`")
    return ", ".join(bounds)


def default_text(name: str, node: dict, required: set[str]) -> str:
    if name in required:
        return "required"
    if "default" in node:
        return code(node["default"])
    return "-"


def description(node: dict) -> str:
    return " ".join(str(node.get("description", "")).split()).replace("|", "\\|")


def object_properties(node: dict) -> dict:
    return node.get("properties", {}) if node.get("type", "object") in ("object", ["object"]) else {}


def rows(prefix: str, node: dict, schema: dict, required: set[str],
         seen: dict[str, str] | None = None) -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for ``node``'s properties, depth first.

    Sibling properties that are the same reference (training_by_method's seven
    methods) are one row, their keys in braces, and their definition's keys are
    listed once below it; a later reference to the same definition
    (stamp_classifier.training) names the first instead of repeating it. A
    mapping with named entries (surveys) is listed as ``{name}``, with the names
    it allows. Keys under `training` (and the overrides of it) without a
    description of their own take their `rbda train` option's help.
    """
    seen = {} if seen is None else seen
    out = []
    properties = object_properties(node)
    grouped: dict[str, list[str]] = {}
    for name, child in properties.items():
        if set(child) <= {"$ref", "default"} and "$ref" in child:
            grouped.setdefault(child["$ref"], []).append(name)
    done = set()
    for name, child in properties.items():
        if name in done:
            continue
        names = grouped.get(child.get("$ref"), [name]) if "$ref" in child else [name]
        done.update(names)
        key = prefix + (names[0] if len(names) == 1 else "{" + ",".join(names) + "}")
        resolved = resolve(child, schema)
        text = description(child) or description(resolved)
        if not text and is_training_key(key):
            text = TRAIN_HELP.get(names[0], "")
        ref = child.get("$ref")
        if ref in seen:
            text = (text + " " if text else "") + f"Same keys as `{seen[ref]}`."
            out.append((key, type_text(child, schema), default_text(names[0], child, required), text))
            continue
        overridable = set(object_properties(schema["properties"].get("training", {})))
        keys = set(object_properties(resolved))
        if key != "training" and keys and keys < overridable:
            text = (text + " " if text else "") + (
                f"Any of `training`'s keys but {', '.join(f'`{k}`' for k in sorted(overridable - keys))}.")
            out.append((key, type_text(child, schema), default_text(names[0], child, required), text))
            continue
        if ref and object_properties(resolved):
            seen[ref] = key
        out.append((key, type_text(child, schema), default_text(names[0], child, required), text))
        out += children(key, resolved, schema, seen)
    return out


def is_training_key(key: str) -> bool:
    """A key passed to `rbda train`: under `training`, or under an override of it."""
    parent = key.rpartition(".")[0]
    return parent == "training" or parent.startswith("training_by_method.") or parent == "stamp_classifier.training"


def children(key: str, node: dict, schema: dict, seen: dict[str, str]) -> list[tuple[str, str, str, str]]:
    out = rows(key + ".", node, schema, set(node.get("required", [])), seen)
    entries = node.get("additionalProperties")
    if isinstance(entries, dict):
        names = resolve(node.get("propertyNames", {}), schema).get("enum")
        entry = resolve(entries, schema)
        entry_key = f"{key}.{{name}}"
        text = description(entry) or (f"one entry per name ({', '.join(map(str, names))})" if names else "")
        if names and description(entry):
            text += f" Names: {', '.join(map(str, names))}."
        out.append((entry_key, type_text(entry, schema), "-", text))
        out += rows(entry_key + ".", entry, schema, set(entry.get("required", [])), seen)
        out += conditional_requirements(entry_key, entry)
    items = node.get("items")
    if isinstance(items, dict) and object_properties(resolve(items, schema)):
        item = resolve(items, schema)
        out += rows(f"{key}[].", item, schema, set(item.get("required", [])), seen)
    return out


def conditional_requirements(key: str, node: dict) -> list[tuple[str, str, str, str]]:
    """The schema's `if {x: const} then {required: [...]}` rules, as one note row."""
    notes = []
    for rule in node.get("allOf", []):
        condition = rule.get("if", {}).get("properties", {})
        needed = rule.get("then", {}).get("required", [])
        for field, test in condition.items():
            if "const" in test and needed:
                notes.append(f"`{field}: {test['const']}` needs {', '.join(f'`{n}`' for n in needed)}")
    return [(f"{key} (rules)", "", "", "; ".join(notes) + ".")] if notes else []


TRAIN_HELP: dict[str, str] = {}


def render(schema: dict) -> str:
    TRAIN_HELP.update(train_option_help())
    lines = [HEADER.rstrip("\n"), "", description(schema), "",
             "| key | type and bounds | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, text in rows("", schema, schema, set(schema.get("required", []))):
        lines.append(f"| `{key}` | {kind.replace('|', chr(92) + '|')} | {default} | {text} |")
    return "\n".join(lines) + "\n"


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 when {shown(PAGE)} differs from what the schema gives")
    args = parser.parse_args(argv)
    page = render(yaml.safe_load(SCHEMA.read_text()))
    if args.check:
        if not PAGE.is_file() or PAGE.read_text() != page:
            print(f"{shown(PAGE)} is not what {shown(SCHEMA)} gives: "
                  "run `python scripts/config_reference.py`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {shown(PAGE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
