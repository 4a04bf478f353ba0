# Study definition derived from the validated config, input functions and
# path helpers shared by the rule files. Nothing here depends on time or on
# Python's hash(): every value is a pure function of the config, except the
# training jobs' memory, which also follows their surveys' sizes.

import itertools
import os
import re
from pathlib import Path

import rbda
from rbda.provenance import learning_core_sha256
from rbda.resources import training_mem_mb
from rbda.results.outputs import GALLERY_DIR, expected_outputs
from rbda.study import (
    ADAPTATION_METHODS,
    LAMBDA_METHODS,
    PAIR_SELECTION_RULES,
    SELECTED_SUFFIX,
    format_lambda,
    option_flag,
    study_pairs,
    training_option_fields,
)


class ConfigError(Exception):
    """A config value the JSON schema cannot check (relations between keys)."""


def _survey_setting(survey, key):
    """A survey's optional setting; None when absent (the schema's default)."""
    return config["surveys"][survey].get(key)


SURVEYS = list(config["surveys"])
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
# Every training job carries the learning core's code hash as a parameter: editing that
# code (rbda.provenance.LEARNING_CORE) reruns training, unless the config opts out.
TRAINING_CODE = (
    learning_core_sha256() if config["rerun_on_code_change"] else "not tracked (rerun_on_code_change: false)"
)
#: The configured adaptation methods, in the vocabulary's order.
CONFIGURED_METHODS = [m for m in ADAPTATION_METHODS if m in config["methods"]]
#: What keeps model files besides the baselines (config save_models: methods and NAME-selected).
SAVE_MODELS = set(config["save_models"])


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


# ---------------------------------------------------------------- paths

PAIR_RUN_ID = "{source}-to-{target}/shots-{shots}/split-{split}"
LAMBDA_RUN_ID = "{source}-to-{target}/shots-{shots}/lambda-{lam}/split-{split}"


def run_id(method):
    """A run's path below its method folder: baseline, per pair, or per pair and lambda.

    ``method`` is a method name, ``NAME-selected`` for a lambda method, or a
    pattern such as ``{method}-selected``.
    """
    if method == "baseline":
        return "{source}/split-{split}"
    return LAMBDA_RUN_ID if method in LAMBDA_METHODS else PAIR_RUN_ID


def run_json(method):
    return f"results/runs/{method}/{run_id(method)}.json"


def run_log(method):
    return f"logs/runs/{method}/{run_id(method)}.log"


def run_benchmark(method):
    return f"logs/benchmarks/runs/{method}/{run_id(method)}.tsv"


def run_checkpoint(method):
    """Resumable training state; not a Snakemake output, so a failed attempt keeps it."""
    return f"results/checkpoints/{method}/{run_id(method)}.ckpt"


def model_file(method):
    """A run's model file: results/models/ with the run's path (rbda predict --model reads it)."""
    return f"results/models/{method}/{run_id(method)}.pt"


PARQUET = "results/data/{survey}.parquet"
SPLIT_NPZ = "results/splits/{survey}/split-{split}.npz"
BASELINE_MODEL = model_file("baseline")


def data_arg(survey, split):
    """One ``--data S=F.parquet:SPLIT.npz`` value of ``rbda train``."""
    return f"{survey}={PARQUET.format(survey=survey)}:{SPLIT_NPZ.format(survey=survey, split=split)}"


# ---------------------------------------------------------------- raw data


def raw_input(wildcards):
    """What `rbda preprocess` reads: a folder made by a rule, or the manifest of a local path."""
    if wildcards.survey in SURVEYS_BY_SOURCE["path"]:
        return f"resources/raw/{wildcards.survey}.local.json"
    return directory(f"resources/raw/{wildcards.survey}")


def local_paths(survey):
    path = config["surveys"][survey]["path"]
    return [path] if isinstance(path, str) else list(path)


def preprocess_inputs(wildcards):
    if wildcards.survey in SURVEYS_BY_SOURCE["path"]:
        return local_paths(wildcards.survey)
    return [f"resources/raw/{wildcards.survey}"]


def preprocess_options(wildcards):
    survey = wildcards.survey
    options = []
    if _survey_setting(survey, "format"):
        options += ["--format", _survey_setting(survey, "format")]
    for key in ("real_classes", "bogus_classes"):
        classes = _survey_setting(survey, key)
        if classes:
            options += [f"--{key.replace('_', '-')}", ",".join(classes)]
    if _survey_setting(survey, "allow_count_mismatch"):
        options.append("--allow-count-mismatch")
    return options


# ---------------------------------------------------------------- training


def training_options(method):
    """The config's training settings for ``method`` as `rbda train` options (rbda.study.TrainingOptions order)."""
    return options_from({**TRAINING, **config["training_by_method"].get(method, {})})


def options_from(settings):
    """Training settings (config keys -> values) as `rbda train` options, in rbda.study.TrainingOptions order."""
    options = []
    for field in training_option_fields():
        if not field.metadata["in_config"]:
            continue
        flag = option_flag(field)
        value = settings[field.name]
        if isinstance(field.default, bool):
            options += [flag] if value else []
        else:
            options += [flag, str(value)]
    return " ".join(options)


def training_resources(method):
    """Memory: the configured mem_mb, or more when the job's surveys need it (rbda.resources)."""
    estimate = config["resources"][method]
    return dict(
        mem_mb=lambda wildcards, input: training_mem_mb(input.parquets, estimate["mem_mb"]),
        runtime=lambda wildcards, attempt: estimate["runtime"] * attempt,
        gpu=1 if TRAINING["device"] == "cuda" else 0,
    )


def lambda_option(wildcards):
    """``--lambda X`` for a run of a lambda method (its path label -> the config's number), else nothing."""
    return f"--lambda {LAMBDA_BY_LABEL[wildcards.lam]}" if "lam" in wildcards.keys() else ""


def baseline_data(wildcards):
    """Every configured survey's data and split: the baseline is evaluated on all of them."""
    return {
        "parquets": [PARQUET.format(survey=s) for s in SURVEYS],
        "splits": [SPLIT_NPZ.format(survey=s, split=wildcards.split) for s in SURVEYS],
    }


def pair_data(wildcards):
    surveys = (wildcards.source, wildcards.target)
    return {
        "parquets": [PARQUET.format(survey=s) for s in surveys],
        "splits": [SPLIT_NPZ.format(survey=s, split=wildcards.split) for s in surveys],
        "init_model": BASELINE_MODEL.format(source=wildcards.source, split=wildcards.split),
    }


def data_options(surveys, split):
    return " ".join(f"--data {data_arg(s, split)}" for s in surveys)


# ---------------------------------------------------------------- selection


def lambda_runs(wildcards, splits, shots=None):
    """Runs of lambda method ``wildcards.method`` of the pair, one per lambda, for ``splits``
    and ``shots`` (default: the group's own shot count)."""
    return [
        run_json(wildcards.method).format(source=wildcards.source, target=wildcards.target, shots=n, lam=lam, split=k)
        for n, lam, k in itertools.product(shots or [wildcards.shots], LAMBDA_LABELS, splits)
    ]


# A pair's lambda, chosen once (rules per_pair, first_split): each selection then reads one
# small file instead of every run of the pair (600 selections x 210 runs in the published study).
LAMBDA_CHOICE = "results/lambda-choices/{method}/{source}-to-{target}.json"


def choice_runs(wildcards):
    """The runs a pair's lambda choice is made on: every run of the pair and method (per_pair),
    or the first split's (first_split), all shot counts."""
    return lambda_runs(wildcards, SPLITS if LAMBDA_SELECTION == "per_pair" else [FIRST_SPLIT], SHOTS)


def selection_inputs(wildcards):
    """The group's runs (one per lambda) and, for the per-pair rules, the pair's choice
    (docs/method.md section 7)."""
    inputs = {"runs": lambda_runs(wildcards, [wildcards.split])}
    if LAMBDA_SELECTION in PAIR_SELECTION_RULES:
        inputs["choice"] = LAMBDA_CHOICE.format(
            method=wildcards.method, source=wildcards.source, target=wildcards.target
        )
    return inputs


def lambda_models(wildcards):
    """The model files of a selection group's runs (one per lambda): the chosen one is copied."""
    return [
        model_file(wildcards.method).format(
            source=wildcards.source, target=wildcards.target, shots=wildcards.shots, lam=lam, split=wildcards.split
        )
        for lam in LAMBDA_LABELS
    ]


# ---------------------------------------------------------------- targets


def saved_models():
    """The model files config save_models asks for (baselines' are inputs of the adaptation runs)."""
    models = []
    for method in CONFIGURED_METHODS:
        groups = itertools.product(PAIRS, SHOTS, SPLITS)
        if method in SAVE_MODELS and method in LAMBDA_METHODS:
            models += [
                model_file(method).format(source=s, target=t, shots=n, lam=lam, split=k)
                for (s, t), n, k in groups
                for lam in LAMBDA_LABELS
            ]
        elif method in SAVE_MODELS:
            models += [model_file(method).format(source=s, target=t, shots=n, split=k) for (s, t), n, k in groups]
        if f"{method}{SELECTED_SUFFIX}" in SAVE_MODELS:
            selected = model_file(f"{method}{SELECTED_SUFFIX}")
            models += [
                selected.format(source=s, target=t, shots=n, split=k)
                for (s, t), n, k in itertools.product(PAIRS, SHOTS, SPLITS)
            ]
    return models


def all_runs():
    """Every run JSON of the study, in a fixed order."""
    runs = expand(run_json("baseline"), source=SURVEYS, split=SPLITS)
    for method in CONFIGURED_METHODS:  # finetune, then mme-selected and mme, as in the published study
        if method in LAMBDA_METHODS:
            runs += [
                run_json(f"{method}-selected").format(source=s, target=t, shots=n, split=k)
                for (s, t), n, k in itertools.product(PAIRS, SHOTS, SPLITS)
            ]
        else:
            runs += [
                run_json(method).format(source=s, target=t, shots=n, split=k)
                for (s, t), n, k in itertools.product(PAIRS, SHOTS, SPLITS)
            ]
    for method in CONFIGURED_METHODS:
        if method in LAMBDA_METHODS:
            runs += [
                run_json(method).format(source=s, target=t, shots=n, lam=lam, split=k)
                for (s, t), n, lam, k in itertools.product(PAIRS, SHOTS, LAMBDA_LABELS, SPLITS)
            ]
    return runs


# ---------------------------------------------------------------- predictions (rules/predict.smk)

PREDICT = config["predict"]
MODELS_ROOT = "results/models/"


def _predict_models():
    """Model id -> model file: run ids of models the workflow writes, or the user's .pt files."""
    if bool(PREDICT["inputs"]) != bool(PREDICT["models"]):
        raise ConfigError(
            "config key 'predict': give both 'inputs' and 'models' (or neither); "
            f"got {len(PREDICT['inputs'])} input(s) and {len(PREDICT['models'])} model(s)"
        )
    written = set(saved_models()) | set(expand(BASELINE_MODEL, source=SURVEYS, split=SPLITS))
    models = {}
    for entry in PREDICT["models"]:
        if entry.endswith(".pt"):
            path = entry
            model_id = entry[len(MODELS_ROOT) : -len(".pt")] if entry.startswith(MODELS_ROOT) else Path(entry).stem
        else:
            model_id = str(Path(entry))  # without a trailing slash
            path = f"{MODELS_ROOT}{model_id}.pt"
            if path not in written:
                raise ConfigError(
                    f"config key 'predict.models': {entry!r} is not a model this study writes "
                    f"(a run id below {MODELS_ROOT}, such as baseline/{SURVEYS[0]}/split-{FIRST_SPLIT} or, "
                    "with save_models: [mme-selected], mme-selected/SOURCE-to-TARGET/shots-N/split-K; "
                    "or a .pt file)"
                )
        if model_id in models:
            raise ConfigError(f"config key 'predict.models': two models with the id {model_id!r}; rename one file")
        models[model_id] = path
    return models


def _predict_inputs():
    """Input name (base name up to the first dot) -> path."""
    inputs = {}
    for entry in PREDICT["inputs"]:
        name = Path(entry).name.split(".")[0]
        if not re.fullmatch(r"[A-Za-z0-9_+-]+", name):
            raise ConfigError(
                f"config key 'predict.inputs': {entry!r} gives the name {name!r} in paths; "
                "expected letters, digits, '_', '+' or '-' before the first dot"
            )
        if name in inputs:
            raise ConfigError(
                f"config key 'predict.inputs': {inputs[name]!r} and {entry!r} have the same name "
                f"{name!r} in paths; rename one"
            )
        inputs[name] = entry
    return inputs


PREDICT_MODELS = _predict_models()
PREDICT_INPUTS = _predict_inputs()
PREDICTION = "results/predictions/{model_id}/{input_name}.parquet"


PREDICTION_GALLERY = "results/predictions/{model_id}/{input_name}.gallery.png"


def prediction_outputs():
    """Every scores table config `predict` asks for, and its gallery (none when it is absent)."""
    return [
        path.format(model_id=m, input_name=i)
        for m in PREDICT_MODELS
        for i in PREDICT_INPUTS
        for path in (PREDICTION, PREDICTION_GALLERY)
    ]


def effective_config():
    """The merged, validated config plus what the workflow derived from it (for `rbda aggregate`)."""
    return {
        "config": config,
        "study": {
            "surveys": SURVEYS,
            "pairs": [f"{s}-to-{t}" for s, t in PAIRS],
            "splits": SPLITS,
            "shots": SHOTS,
            "lambdas": [LAMBDA_BY_LABEL[label] for label in LAMBDA_LABELS],
            "lambda_labels": LAMBDA_LABELS,
            "lambda_selection": LAMBDA_SELECTION,
            "methods": CONFIGURED_METHODS,
            # the preprocessed data: `rbda aggregate` draws stamp galleries from it
            "data": {s: PARQUET.format(survey=s) for s in SURVEYS},
        },
        "rbda_version": rbda.__version__,
    }


def reporting_code():
    """Source files of the aggregation and report code: editing one reruns reporting only."""
    import rbda.results

    files = []
    for package_dir in rbda.results.__path__:
        root = Path(package_dir)
        files += sorted(
            str(p)
            for p in root.rglob("*")
            if p.is_file()
            and p.suffix in {".py", ".html", ".css", ".js", ".j2", ".rst"}
            and "__pycache__" not in p.parts
        )
    return files


REPORT_CAPTIONS = "workflow/report"  # relative to the Snakefile


def _in_snakemake_report(path):
    """Figures, tables, statistics and report.html are shown in `snakemake --report`, with captions."""
    name = Path(path).stem
    if path.startswith(f"{GALLERY_DIR}/"):
        return report(f"results/{path}", caption=f"{REPORT_CAPTIONS}/gallery.rst", category="Stamp galleries")
    if path.startswith("figures/") and path.endswith(".png"):
        return report(f"results/{path}", caption=f"{REPORT_CAPTIONS}/{name}.rst", category="Figures")
    if path.startswith("tables/") and path.endswith(".csv"):
        subcategory = "Per pair" if path.startswith("tables/pairs/") else "Study"
        return report(
            f"results/{path}", caption=f"{REPORT_CAPTIONS}/tables.rst", category="Tables", subcategory=subcategory
        )
    if path.startswith("stats/"):
        return report(f"results/{path}", caption=f"{REPORT_CAPTIONS}/stats.rst", category="Significance tests")
    if path == "report.html":
        return report(f"results/{path}", caption=f"{REPORT_CAPTIONS}/report.rst", category="Report")
    return f"results/{path}"


def report_outputs():
    """Every file `rbda aggregate` writes (named by rbda.results.outputs), most of them in the Snakemake report."""
    return [
        _in_snakemake_report(path)
        for path in expected_outputs(SURVEYS, PAIRS, methods=CONFIGURED_METHODS, galleries=True)
    ]


# ---------------------------------------------------------------- stamp_classifier target

from rbda.study import SURVEY_CLASSES

STAMP_CLASSIFIER = config.get("stamp_classifier")
SC_DIR = "results/stamp_classifier"
#: Its jobs' logs and benchmarks, under logs/ like every other job's.
SC_LOGS = "logs/stamp_classifier"
SC_SPLIT = f"{SC_DIR}/split.npz"
SC_RUN = f"{SC_DIR}/runs/{{variant}}/run-{{run}}.json"
SC_OUTPUTS = [f"{SC_DIR}/summary.csv", f"{SC_DIR}/tests.csv", f"{SC_DIR}/report.md", f"{SC_DIR}/confusion.png"]
# what a variant sets (`rbda train` fills the rest from the config's `training:`)
SC_VARIANT_KEYS = ("model", "beta")

SC_SURVEY, SC_VARIANTS, SC_RUNS = None, {}, []
if STAMP_CLASSIFIER:
    SC_SURVEY = STAMP_CLASSIFIER["survey"]
    if SC_SURVEY not in SURVEYS:
        raise ConfigError(
            f"config key 'stamp_classifier.survey': {SC_SURVEY!r} is not a configured survey "
            f"(surveys: {', '.join(SURVEYS)})"
        )
    SC_VARIANTS = {v["name"]: v for v in STAMP_CLASSIFIER["variants"]}
    if len(SC_VARIANTS) != len(STAMP_CLASSIFIER["variants"]):
        raise ConfigError("config key 'stamp_classifier.variants': variant names must be distinct")
    SC_RUNS = list(range(STAMP_CLASSIFIER["runs"]))


def _sc_survey(wildcards=None):
    """The section's survey; a config error naming the section when the config has none."""
    if not STAMP_CLASSIFIER:
        raise ConfigError(
            "the stamp_classifier target needs a `stamp_classifier:` config section "
            "(survey, runs, variants; see presets/stamp_classifier.yaml)"
        )
    return SC_SURVEY


def stamp_classifier_outputs():
    """The target's outputs, or nothing when the config has no `stamp_classifier:` section."""
    return SC_OUTPUTS if STAMP_CLASSIFIER else []


def stamp_classifier_options(wildcards):
    """`rbda train` options: the config's training settings (and the section's `training:`), the
    variant's backbone and beta, task multiclass."""
    variant = SC_VARIANTS[wildcards.variant]
    return options_from(
        {
            **TRAINING,
            **STAMP_CLASSIFIER.get("training", {}),
            **{k: variant[k] for k in SC_VARIANT_KEYS},
            "task": "multiclass",
        }
    )
