# The config's `stamp_classifier:` section checked, and the paths and options of its jobs
# (rules/stamp_classifier.smk).

from rbda.registry import BACKBONES
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
    for _i, _variant in enumerate(STAMP_CLASSIFIER["variants"]):
        check_names([_variant["model"]], BACKBONES, f"stamp_classifier.variants[{_i}].model")
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
