"""The snakemake commands the README, the docs/ pages and the presets' headers tell users to type.

Each is parsed with Snakemake's own argument parser, as the user's shell would
hand it over, so a command that means something other than it says fails
here: `--configfile` takes every following word, so a target written after
the config files becomes a config file named like the target.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from snakemake.cli import get_argument_parser

# Overlays the README asks the user to write, named as placeholders.
PLACEHOLDER_CONFIGS = {"gpu.yaml", "YOUR_CONFIG.yaml"}


def joined_commands(lines: list[str]) -> list[str]:
    """Each line starting with `snakemake `, joined with the lines its trailing backslashes continue
    it onto, whitespace-normalised (``lines`` already stripped of indentation or comment marks)."""
    commands = []
    for i, line in enumerate(lines):
        if not line.startswith("snakemake "):
            continue
        command = line
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + " " + lines[i]
        commands.append(" ".join(command.split()))
    return commands


def readme_commands(text: str) -> list[str]:
    """`snakemake ...` in inline code spans and at the start of code-block lines (with continuations)."""
    spans = [" ".join(span.split()) for span in re.findall(r"`(snakemake [^`]+)`", text)]
    return spans + joined_commands([line.strip() if "`" not in line else "" for line in text.splitlines()])


def preset_commands(text: str) -> list[str]:
    """`snakemake ...` in a preset's leading comment block (with continuations)."""
    return joined_commands([line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")])


def documentation_pages(repo_root: Path) -> list[Path]:
    """README.md and every page under docs/."""
    return [repo_root / "README.md", *sorted((repo_root / "docs").glob("*.md"))]


def documented_commands(repo_root: Path) -> list[tuple[str, str]]:
    found = []
    for page in documentation_pages(repo_root):
        found += [(str(page.relative_to(repo_root)), c) for c in readme_commands(page.read_text())]
    for preset in sorted((repo_root / "presets").glob("*.yaml")):
        found += [(f"presets/{preset.name}", c) for c in preset_commands(preset.read_text())]
    return found


def rule_names(repo_root: Path) -> set[str]:
    names = set()
    for smk in [repo_root / "Snakefile", *sorted((repo_root / "rules").glob("*.smk"))]:
        names |= set(re.findall(r"^rule (\w+)", smk.read_text(), re.MULTILINE))
    return names


def without_comment(command: str) -> str:
    return command.split(" #", 1)[0].strip()


def test_the_extractors_see_targets_written_after_config_files():
    readme = "run\n\n    snakemake --configfile a.yaml \\\n        b.yaml all   # note\n\nand `snakemake -n`"
    assert readme_commands(readme) == ["snakemake -n", "snakemake --configfile a.yaml b.yaml all # note"]
    args = get_argument_parser().parse_args(shlex.split(without_comment(readme_commands(readme)[1]))[1:])
    assert [p.name for p in args.configfile] == ["a.yaml", "b.yaml", "all"]  # what the check below refuses
    preset = "# Overlay:\n#   snakemake x --configfile c.yaml \\\n#       d.yaml\nkey: 1\n"
    assert preset_commands(preset) == ["snakemake x --configfile c.yaml d.yaml"]


def test_every_documented_snakemake_command_means_what_it_says(repo_root):
    commands = documented_commands(repo_root)
    assert len(commands) >= 8, commands  # the extraction itself still finds the documented commands
    pages = {where for where, _ in commands}
    # the README's demo command, and the task pages that start with a snakemake command
    assert {"README.md", "docs/slurm.md", "docs/outputs.md", "docs/stamp-classifier.md"} <= pages, pages
    rules = rule_names(repo_root)
    parser = get_argument_parser()
    for where, command in commands:
        args = parser.parse_args(shlex.split(without_comment(command))[1:])
        for config in args.configfile or []:
            assert config.suffix in {".yaml", ".yml"}, f"{where}: `{command}`: {config} is read as a config file"
            assert str(config) in PLACEHOLDER_CONFIGS or (repo_root / config).is_file(), f"{where}: `{command}`: no {config}"
        for profile in args.profile or []:
            assert (repo_root / profile).is_dir(), f"{where}: `{command}`: no profile {profile}"
        for target in args.targets or []:
            assert target in rules or "/" in target, f"{where}: `{command}`: {target} is neither a rule nor a path"



def test_every_docs_page_starts_with_the_command_that_does_it(repo_root):
    """Each task page: its title, then a bash block with the command (the README links to them)."""
    readme = (repo_root / "README.md").read_text()
    for page in documentation_pages(repo_root)[1:]:
        if page.name in {"method.md", "architecture.md"}:  # reference pages, not tasks
            continue
        lines = page.read_text().splitlines()
        assert lines[0].startswith("# "), f"{page.name}: no title"
        assert lines[2] == "```bash" and lines[3].strip(), f"{page.name}: no command under the title"
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"


def test_readme_links_point_at_files(repo_root):
    readme = (repo_root / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (repo_root / target).exists(), f"README.md links {target}, which does not exist"


def test_readme_stays_a_front_page(repo_root):
    """The README fits on a few screens (issue 31); what does not fit belongs on a docs/ page."""
    lines = (repo_root / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to a docs/ page"
