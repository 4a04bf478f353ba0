# The study derived from the validated config: surveys, splits, shots, methods (checked against
# rbda.registry), method settings, lambdas, pairs, the training jobs' code hash, wildcard
# constraints. Included first; the other rule files read these names. Nothing here, in
# rules/paths.smk or in rules/*_setup.smk depends on time or on Python's hash(): every value is
# a pure function of the config, except the training jobs' memory, which also follows their
# surveys' sizes.

import os
import re
from pathlib import Path

from rbda.provenance import data_preparation_sha256, run_code_sha256
from rbda.registry import (
    ADAPTATION_METHODS,
    BACKBONES,
    LAMBDA_METHODS,
    SAVE_MODEL_CHOICES,
    SELECTED_SUFFIX,
    check_method_keys,
    check_names,
    method_settings,
)
from rbda.study import format_lambda, study_pairs


class ConfigError(Exception):
    """A config value the JSON schema cannot check (relations between keys)."""


def _survey_setting(survey, key):
    """A survey's optional setting; None when absent (the schema's default)."""
    return config["surveys"][survey].get(key)


SURVEYS = list(config["surveys"])


def _declare_surveys(surveys):
    """Surveys other than the shipped four are declared in the config (surveys.<name>.declare); their
    declarations go to every rbda command through RBDA_SURVEYS (a file written only when it changes)."""
    from rbda.surveys import SURVEYS_ENV, shipped_surveys

    shipped = shipped_surveys()
    declared = {}
    for name, settings in surveys.items():
        if name in shipped and "declare" in settings:
            raise ConfigError(
                f"config key 'surveys.{name}.declare': {name} is a shipped survey "
                f"(rbda/data/surveys.json); declare surveys of other names"
            )
        if name not in shipped and "declare" not in settings:
            raise ConfigError(
                f"config key 'surveys.{name}': a survey other than {', '.join(shipped)} "
                f"needs its declaration (declare: stamp_size, layouts, class_map, ...; docs/surveys.md)"
            )
        if name not in shipped:
            declared[name] = settings["declare"]
    if declared:
        import json

        path = Path("resources/survey_declarations.json").resolve()
        text = json.dumps({"surveys": declared}, indent=2, sort_keys=True) + "\n"
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        os.environ[SURVEYS_ENV] = str(path)
        from rbda.surveys import read_declarations

        read_declarations(path)  # checked before planning: an error names the file, survey and setting
    return declared


DECLARED_SURVEYS = _declare_surveys(config["surveys"])


def survey_declaration(wildcards):
    """A preprocessing job's declaration param (its change reruns the job): JSON, or "shipped"."""
    import json

    declared = DECLARED_SURVEYS.get(wildcards.survey)
    return "shipped" if declared is None else json.dumps(declared, sort_keys=True)


SPLITS = list(range(config["splits"]))
FIRST_SPLIT = SPLITS[0]
SHOTS = sorted(config["shots"])
TRAINING = config["training"]
LAMBDA_SELECTION = config["lambda_selection"]
if TRAINING["task"] != "binary":
    raise ConfigError(
        f"config key 'training.task': the domain-adaptation study is binary (real/bogus), got "
        f"{TRAINING['task']!r}; the multiclass task runs in the stamp_classifier section"
    )
#: The configured adaptation methods, in the registry's order (rbda.registry: the method modules).
CONFIGURED_METHODS = [
    m for m in ADAPTATION_METHODS if m in check_names(config["methods"], ADAPTATION_METHODS, "methods")
]
#: What keeps model files besides the baselines (config save_models: methods and NAME-selected).
SAVE_MODELS = set(check_names(config["save_models"], SAVE_MODEL_CHOICES, "save_models"))
for _key in ("training_by_method", "resources", "method_settings"):
    check_method_keys(config[_key], _key)
check_names([TRAINING["model"]], BACKBONES, "training.model")
#: Each configured method's own settings: its declared defaults, then config method_settings.
METHOD_SETTINGS = {m: method_settings(m, config["method_settings"].get(m)) for m in ("baseline", *ADAPTATION_METHODS)}


# Every preprocessing job carries the data-preparation code's hash (readers, FITS decoding,
# preprocessing: rbda.provenance.DATA_PREPARATION) the same way as training jobs carry theirs:
# editing it reruns preprocessing and everything built on its Parquet files, with the same opt-out.
DATA_PREPARATION_CODE = (
    data_preparation_sha256() if config["rerun_on_code_change"] else "not tracked (rerun_on_code_change: false)"
)


def training_code(method, backbone):
    """The code hash of a training job (a parameter of the job): the shared learning code,
    the method's module (and the method modules it imports) and the backbone's module
    (rbda.provenance.run_code_sha256). Editing that code reruns the method's runs; editing
    or adding another method's module does not. Not tracked with rerun_on_code_change: false."""
    if not config["rerun_on_code_change"]:
        return "not tracked (rerun_on_code_change: false)"
    return run_code_sha256(method, backbone)


def saves_model(method):
    """Whether runs of ``method`` (a method or NAME-selected) write a model file: a lambda
    method's runs also write theirs when its selected runs keep one (the selection copies it)."""
    if method == "baseline" or method in SAVE_MODELS:
        return True
    return method in LAMBDA_METHODS and f"{method}{SELECTED_SUFFIX}" in SAVE_MODELS


def _lambda_labels(values):
    labels = {}
    for value in values:
        label = format_lambda(value)
        if label in labels:
            raise ConfigError(
                f"config key 'lambdas': {labels[label]!r} and {value!r} are the same "
                f"value in paths (both written as {label!r}); give distinct values"
            )
        labels[label] = value
    return labels


# path label (e.g. "0.05") -> the config's number, passed to `rbda train --lambda`
LAMBDA_BY_LABEL = _lambda_labels(config["lambdas"])
LAMBDA_LABELS = list(LAMBDA_BY_LABEL)


PAIRS = study_pairs(SURVEYS, config["pairs"])
SURVEYS_BY_SOURCE = {
    kind: [s for s in SURVEYS if config["surveys"][s]["source"] == kind] for kind in ("url", "path", "synthetic")
}


def one_of(names):
    """A wildcard regex matching exactly ``names`` (never matching when empty)."""
    return "|".join(names) if names else "(?!)"


wildcard_constraints:
    survey=one_of(SURVEYS),
    source=one_of(SURVEYS),
    target=one_of(SURVEYS),
    split=r"\d+",
    shots=r"\d+",
    lam=one_of([re.escape(label) for label in LAMBDA_LABELS]),
