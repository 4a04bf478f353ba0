# Paths of the study's files and the input functions of the data, training and selection rules
# (rules/data.smk, rules/training.smk, rules/selection.smk): run paths, `rbda train` options and
# resources, lambda runs and choices, the runs and model files the study asks for.

import itertools

from rbda.registry import METHOD_RESOURCES
from rbda.resources import training_mem_mb
from rbda.study import PAIR_SELECTION_RULES, option_flag, training_option_fields

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


SURVEYS_WITH_PACKETS = [s for s in SURVEYS if _survey_setting(s, "packets")]
#: A survey's stamps as alert packets (config surveys.S.packets; `rbda packets`), for predict.inputs.
PACKETS = "resources/packets/{survey}"


def packet_options(wildcards):
    """`rbda packets` options of a survey's `packets` setting (layout, schema id, limit)."""
    settings = _survey_setting(wildcards.survey, "packets")
    options = ["--layout", settings["layout"]]
    for key in ("schema_id", "limit"):
        if settings.get(key) is not None:
            options += [f"--{key.replace('_', '-')}", str(settings[key])]
    return options + reader_options(wildcards.survey)


def reader_options(survey):
    """How a survey's raw files are read, as `rbda preprocess` and `rbda packets` take it: layout, class map."""
    options = []
    if _survey_setting(survey, "format"):
        options += ["--format", _survey_setting(survey, "format")]
    for key in ("real_classes", "bogus_classes"):
        classes = _survey_setting(survey, key)
        if classes:
            options += [f"--{key.replace('_', '-')}", ",".join(classes)]
    return options


def preprocess_options(wildcards):
    survey = wildcards.survey
    options = reader_options(survey)
    if _survey_setting(survey, "allow_count_mismatch"):
        options.append("--allow-count-mismatch")
    return options


# ---------------------------------------------------------------- training


def training_options(method):
    """The config's training settings for ``method`` as `rbda train` options (rbda.study.TrainingOptions order)."""
    settings = {**TRAINING, **config["training_by_method"].get(method, {})}
    return " ".join([options_from(settings), *method_setting_options(method)]).strip()


def method_setting_options(method):
    """``--NAME VALUE`` for each setting ``method`` declares (rbda.registry), its configured value."""
    return [f"--{name.replace('_', '-')} {value}" for name, value in METHOD_SETTINGS[method].items()]


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


# Profiles name classes of rules, not rules: Snakemake's `set-resources` and `groups` take
# rule names, and one rule per method would make every profile list the methods
# (rbda.registry). So a profile's `set-resources: {training: {...}}` is given to every
# training rule (train_baseline, each method's rules, the stamp classifier's), and its
# `groups: {adaptation_runs: G}` / `{lambda_runs: G}` put the jobs that train one adaptation
# run (a method without lambda; a lambda method with lambda_jobs: per_lambda) in group G.
# A grid job (lambda_jobs: grid) trains a whole lambda grid and is never bundled.
# A rule's own entry in the profile (e.g. `set-resources: {train_mme: {...}}`) still wins.
PROFILE_TRAINING_RESOURCES = {
    name: getattr(value, "raw", value)
    for name, value in workflow.resource_settings.overwrite_resources.get("training", {}).items()
}


def profile_group(rule_class):
    """A rule's `group:`: the group a profile's `groups:` gives ``rule_class`` (adaptation_runs,
    lambda_runs), or None. Looked up when jobs are planned: Snakemake reads the profile's groups
    after the workflow."""
    return lambda wildcards: workflow.group_settings.overwrite_groups.get(rule_class)


def training_resources(method):
    """Memory: the configured mem_mb, or more when the job's surveys need it (rbda.resources);
    then the profile's `set-resources: {training: ...}` (e.g. a GPU partition and `gpu: 1`)."""
    estimate = {**METHOD_RESOURCES[method], **config["resources"].get(method, {})}
    return {
        "mem_mb": lambda wildcards, input: training_mem_mb(input.parquets, estimate["mem_mb"]),
        "runtime": lambda wildcards, attempt: estimate["runtime"] * attempt,
        "gpu": 1 if TRAINING["device"] == "cuda" else 0,
        **PROFILE_TRAINING_RESOURCES,
    }


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


def choice_inputs(wildcards):
    """What a pair's lambda choices are made on (rules per_pair, first_split): every run of the pair
    and method, all shot counts and splits, and the target's labels and split files, which tell
    which splits' validation items avoid each split's test part (docs/method.md section 7)."""
    return {
        "runs": lambda_runs(wildcards, SPLITS, SHOTS),
        "data": PARQUET.format(survey=wildcards.target),
        "splits": [SPLIT_NPZ.format(survey=wildcards.target, split=k) for k in SPLITS],
    }


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


# ---------------------------------------------------------------- lambda grid jobs (lambda_jobs: grid)

from rbda.lambda_jobs import grid_runtime, split_grid


def member_path(pattern, label):
    """A lambda run's path pattern with its lambda filled in (the other wildcards left)."""
    return pattern.replace("{lam}", label)


def member_outputs(method, label):
    """Every output of every (pair, shots, split) run of ``method`` at lambda ``label``."""
    patterns = [run_json(method)] + ([model_file(method)] if saves_model(method) else [])
    return [
        member_path(p, label).format(source=s, target=t, shots=n, split=k)
        for p in patterns
        for (s, t), n, k in itertools.product(PAIRS, SHOTS, SPLITS)
    ]


def grid_rules(method):
    """The name and member lambdas of each grid job of a lambda method: train_METHOD for the
    lambdas missing somewhere, train_METHOD_rerun for those trained everywhere (rbda.lambda_jobs)."""
    missing, trained = split_grid({label: member_outputs(method, label) for label in LAMBDA_LABELS})
    return [
        (name, members)
        for name, members in ((f"train_{method}", missing), (f"train_{method}_rerun", trained))
        if members
    ]


def grid_resources(method, members):
    """A training job's resources, its time limit times its member count."""
    minutes = {**METHOD_RESOURCES[method], **config["resources"].get(method, {})}["runtime"]
    return {
        **training_resources(method),
        "runtime": lambda wildcards, attempt: grid_runtime(minutes, members, attempt),
    }
