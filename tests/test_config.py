"""The study configuration: schema, published config, presets, conda environment."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PAPER_LAMBDAS = [0.01, 0.02, 0.03, 0.05, 0.1, 0.5, 10]


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture()
def study() -> dict:
    return load_yaml(REPO / "config.yaml")


def validated(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate(config, str(SCHEMA))
    return config


def test_published_config_is_the_papers_study(study):
    config = validated(study)
    assert list(config["surveys"]) == ["hits", "des", "ztf", "atlas"]
    assert config["splits"] == 10
    assert config["shots"] == [1, 5, 10, 20, 40]
    assert config["lambdas"] == PAPER_LAMBDAS
    assert config["lambda_selection"] == "per_pair"
    assert config["surveys"]["atlas"]["real_classes"] == ["kast", "streak"]
    training = config["training"]
    assert (training["lr"], training["momentum"], training["batch_size"]) == (0.01, 0.9, 50)
    assert (training["epoch_size"], training["patience"], training["lr_halve_every"]) == (10000, 100, 100000)
    assert training["val_shots"] == 10


def test_thesis_lambda_grid_is_one_edit_away():
    text = (REPO / "config.yaml").read_text()
    thesis = re.search(r"#.*thesis grid: (\[.*\])", text)
    assert thesis, "config.yaml should show the thesis grid next to the paper's"
    edited = re.sub(r"(?m)^lambdas: \[.*\]$", f"lambdas: {thesis.group(1)}", text)
    assert validated(yaml.safe_load(edited))["lambdas"] == [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 10]


def test_demo_preset_overlays_a_small_synthetic_study(study):
    update_config(study, load_yaml(REPO / "presets" / "demo.yaml"))
    config = validated(study)
    assert {s["source"] for s in config["surveys"].values()} == {"synthetic"}
    assert config["splits"] == 2
    assert config["shots"] == [1, 5, 20]
    assert len(config["lambdas"]) == 2


def test_schema_fills_defaults():
    config = validated({
        "surveys": {"hits": {"source": "synthetic", "synthetic_size": 100},
                    "des": {"source": "synthetic", "synthetic_size": 100}},
        "splits": 1, "shots": [1], "lambdas": [0.1],
    })
    assert config["seed"] == 2023
    assert config["lambda_selection"] == "per_pair"
    assert config["training"]["epoch_size"] == 10000
    assert config["resources"]["mme"]["runtime"] == 60


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"surveys": {"foo": {"source": "synthetic", "synthetic_size": 100}}}, r"'foo' is not one of"),
        ({"shots": [0, 5]}, r"0 is less than the minimum of 1"),
        ({"shots": [-5]}, r"-5 is less than the minimum of 1"),
        ({"lambdas": []}, r"\[\] should be non-empty"),
        ({"lambdas": [0.1, 0]}, r"0 is less than or equal to the minimum of 0"),
        ({"splits": 0}, r"0 is less than the minimum of 1"),
        ({"shots": [5, 5]}, r"has non-unique elements"),
        ({"lambda_selection": "best"}, r"'best' is not one of \['per_pair', 'per_split', 'first_split'\]"),
        ({"surveys": {"hits": {"source": "ftp"}}}, r"'ftp' is not one of \['url', 'path', 'synthetic'\]"),
        ({"surveys": {"hits": {"sha256": "abc"}}}, r"'abc' does not match"),
        ({"surveys": {"des": {"source": "url"}}}, r"'url' is a required property"),
        ({"surveys": {"des": {"source": "synthetic"}}}, r"'synthetic_size' is a required property"),
        ({"training": {"epochs": 5}}, r"'epochs' was unexpected"),
        ({"training": {"device": "tpu"}}, r"'tpu' is not one of"),
        ({"training": {"model": "resnet"}}, r"'resnet' is not one of \['study_cnn', 'deephits', 'earlysn', 'deephits_unrotated'\]"),
        ({"training": {"beta": -0.5}}, r"-0.5 is less than the minimum of 0"),
        ({"training": {"task": "regression"}}, r"'regression' is not one of \['binary', 'multiclass'\]"),
        # one backbone for every method: fine-tuning and MME start from the baseline's weights
        ({"training_by_method": {"finetune": {"model": "deephits"}}}, r"'model' was unexpected"),
        ({"pairs": ["des_hits"]}, r"'des_hits' does not match"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(study, overlay, message):
    update_config(study, overlay)
    with pytest.raises(WorkflowError, match=message) as info:
        validate(study, str(SCHEMA))
    key = next(iter(overlay))
    assert f"['{key}']" in str(info.value), "the message should say where the bad value is"


def requirement_name_and_spec(text: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(\S*)\s*", text)
    assert match, f"cannot parse requirement {text!r}"
    return match.group(1).lower().replace("_", "-"), match.group(2)


# conda-forge names of PyPI packages whose names differ
CONDA_NAME = {"torch": "pytorch", "zlib-ng": "python-zlib-ng"}


def test_conda_environment_matches_pyproject_dependencies():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    env = load_yaml(REPO / "envs" / "rbda.yaml")
    required = dict(requirement_name_and_spec(d) for d in pyproject["project"]["dependencies"])
    required = {CONDA_NAME.get(name, name): spec for name, spec in required.items()}
    python = pyproject["project"]["requires-python"]

    conda, pip = {}, []
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            pip += entry["pip"]
            continue
        name, spec = requirement_name_and_spec(entry.replace("=", "==", 1) if re.fullmatch(r"python=[\d.]+", entry) else entry)
        conda[name] = spec
    python_pin = conda.pop("python")
    conda.pop("pip")

    assert conda == required, "envs/rbda.yaml and pyproject.toml [project.dependencies] disagree"
    version = lambda text: tuple(int(part) for part in text.lstrip("=><").split("."))  # noqa: E731
    assert version(python_pin) >= version(python), "conda python older than requires-python"
    assert pip == [], "the package is installed by the post-deploy script, not by pip requirements"
    post_deploy = (REPO / "envs" / "rbda.post-deploy.sh").read_text()
    assert "pip install --no-deps" in post_deploy and "-e ." in post_deploy


def _bounds_from_schema(entry: dict) -> dict:
    return {"gt": entry.get("exclusiveMinimum"), "ge": entry.get("minimum"),
            "lt": entry.get("exclusiveMaximum"), "le": entry.get("maximum"),
            "choices": tuple(entry["enum"]) if "enum" in entry else None}


@pytest.mark.parametrize("section", ["training", "training_override"])
def test_schema_training_defaults_and_bounds_are_the_vocabularys(section):
    """One place for training defaults: the schema agrees with rbda.study.TrainingOptions
    (a config the workflow accepts can never be one training rejects, e.g. momentum 1)."""
    from rbda.study import TRAINING_DEFAULTS, training_option_fields

    schema = load_yaml(SCHEMA)
    entries = (schema["properties"]["training"]["properties"] if section == "training"
               else schema["$defs"]["training_override"]["properties"])
    options = {f.name: f for f in training_option_fields()}
    in_config = {name for name, f in options.items() if f.metadata["in_config"]}
    # the device is one for the whole study (training jobs' GPU request follows it)
    # and the backbone too: fine-tuning and MME start from the baseline, so all methods share one
    # and the task: the study's methods are binary (task: multiclass is the stamp_classifier target's)
    assert set(entries) == (in_config if section == "training" else in_config - {"device", "model", "task"})
    for name, entry in entries.items():
        meta = options[name].metadata
        assert _bounds_from_schema(entry) == {k: meta[k] for k in ("gt", "ge", "lt", "le", "choices")}, name
        if section == "training":
            assert entry["default"] == getattr(TRAINING_DEFAULTS, name), name


def test_config_yaml_training_values_are_the_vocabularys_defaults():
    """config.yaml shows the training defaults for users to edit; rbda.study.TrainingOptions owns
    them (a default changed in one place and not the other would make the shipped study differ
    from what `rbda train` does by default)."""
    from rbda.study import TRAINING_DEFAULTS

    training = load_yaml(REPO / "config.yaml")["training"]
    differ = {name: (value, getattr(TRAINING_DEFAULTS, name)) for name, value in training.items()
              if value != getattr(TRAINING_DEFAULTS, name)}
    assert differ == {}, f"config.yaml training values (config, default) differ: {differ}"


def test_schema_survey_names_are_the_vocabularys():
    from rbda.study import SURVEYS

    assert tuple(load_yaml(SCHEMA)["$defs"]["survey_name"]["enum"]) == SURVEYS


@pytest.mark.parametrize(("key", "value"), [("momentum", 1), ("lr", 0), ("batch_size", 1), ("patience", 0)])
def test_a_training_value_training_rejects_is_rejected_by_the_schema(study, key, value):
    from rbda.errors import SettingError
    from rbda.study import check_option

    with pytest.raises(SettingError, match=key):
        check_option(key, value)
    study["training"][key] = value
    with pytest.raises(WorkflowError):
        validated(study)


def test_schema_stamp_classifier_section_is_the_vocabularys():
    """stamp_classifier: surveys with original classes, the backbones, the balanced split's defaults."""
    from rbda.study import BACKBONES, MULTICLASS_TEST_PER_CLASS, MULTICLASS_VAL_PER_CLASS, SURVEY_CLASSES

    section = load_yaml(SCHEMA)["properties"]["stamp_classifier"]
    assert "default" not in section  # absent unless configured
    props = section["properties"]
    assert tuple(props["survey"]["enum"]) == tuple(SURVEY_CLASSES)
    assert tuple(props["variants"]["items"]["properties"]["model"]["enum"]) == BACKBONES
    assert props["val_per_class"]["default"] == MULTICLASS_VAL_PER_CLASS
    assert props["test_per_class"]["default"] == MULTICLASS_TEST_PER_CLASS


def test_the_command_line_starts_without_heavy_imports():
    """`rbda --help` and the data commands stay fast: building the parser imports no torch,
    pandas or matplotlib (each costs 0.4-1 s in every one of the workflow's processes)."""
    import subprocess
    import sys

    code = ("import sys, rbda.cli; rbda.cli.build_parser(); "
            "print(','.join(m for m in ('torch', 'pandas', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported when building the parser: {out}"
