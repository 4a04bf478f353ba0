# The stamp_classifier target (issue 14; RELATED.md E.5): N runs with distinct seeds of each
# configured variant of a multiclass stamp classifier (backbone + confidence penalty) on one
# survey's original classes, then means ± SD and one-sided Welch tests with Holm correction on
# the test metrics (`rbda stamp-classifier`). Only when the config has a `stamp_classifier:`
# section; then `rule all` asks for its outputs too.
#
#   snakemake --profile profiles/local --configfile config.yaml presets/demo.yaml \
#       presets/stamp_classifier.yaml stamp_classifier

from rbda.study import SURVEY_CLASSES

STAMP_CLASSIFIER = config.get("stamp_classifier")
SC_DIR = "results/stamp_classifier"
SC_SPLIT = SC_DIR + "/split.npz"
SC_RUN = SC_DIR + "/runs/{variant}/run-{run}.json"
SC_OUTPUTS = [f"{SC_DIR}/summary.csv", f"{SC_DIR}/tests.csv", f"{SC_DIR}/report.md", f"{SC_DIR}/confusion.png"]
# what a variant sets (`rbda train` fills the rest from the config's `training:`)
SC_VARIANT_KEYS = ("model", "beta")

SC_SURVEY, SC_VARIANTS, SC_RUNS = None, {}, []
if STAMP_CLASSIFIER:
    SC_SURVEY = STAMP_CLASSIFIER["survey"]
    if SC_SURVEY not in SURVEYS:
        raise ConfigError(f"config key 'stamp_classifier.survey': {SC_SURVEY!r} is not a configured survey "
                          f"(surveys: {', '.join(SURVEYS)})")
    SC_VARIANTS = {v["name"]: v for v in STAMP_CLASSIFIER["variants"]}
    if len(SC_VARIANTS) != len(STAMP_CLASSIFIER["variants"]):
        raise ConfigError("config key 'stamp_classifier.variants': variant names must be distinct")
    SC_RUNS = list(range(STAMP_CLASSIFIER["runs"]))


def _sc_survey(wildcards=None):
    """The section's survey; a config error naming the section when the config has none."""
    if not STAMP_CLASSIFIER:
        raise ConfigError("the stamp_classifier target needs a `stamp_classifier:` config section "
                          "(survey, runs, variants; see presets/stamp_classifier.yaml)")
    return SC_SURVEY


def stamp_classifier_outputs():
    """The target's outputs, or nothing when the config has no `stamp_classifier:` section."""
    return SC_OUTPUTS if STAMP_CLASSIFIER else []


def stamp_classifier_options(wildcards):
    """`rbda train` options: the config's training settings (and the section's `training:`), the
    variant's backbone and beta, task multiclass."""
    variant = SC_VARIANTS[wildcards.variant]
    return options_from({**TRAINING, **STAMP_CLASSIFIER.get("training", {}),
                         **{k: variant[k] for k in SC_VARIANT_KEYS}, "task": "multiclass"})


rule stamp_classifier_split:
    """One balanced multiclass split: the same validation/test items per class for every run."""
    input:
        lambda wildcards: PARQUET.format(survey=_sc_survey()),
    output:
        SC_SPLIT,
    params:
        seed=config["seed"],
        survey=lambda wildcards: SC_SURVEY,
        val=lambda wildcards: STAMP_CLASSIFIER["val_per_class"],
        test=lambda wildcards: STAMP_CLASSIFIER["test_per_class"],
    log:
        SC_DIR + "/logs/split.log",
    conda:
        "../envs/rbda.yaml"
    shell:
        "rbda split --task multiclass --data {input:q} --survey {params.survey} --split 0"
        " --seed {params.seed} --val-per-class {params.val} --test-per-class {params.test}"
        " --output {output:q} > {log:q} 2>&1"


rule stamp_classifier_train:
    """Run {run} of a variant: a multiclass baseline with seed = base seed + run (init and batches)."""
    input:
        parquets=lambda wildcards: [PARQUET.format(survey=_sc_survey())],
        split=SC_SPLIT,
    output:
        metrics=SC_RUN,
    params:
        survey=lambda wildcards: SC_SURVEY,
        seed=lambda wildcards: config["seed"] + int(wildcards.run),
        checkpoint=SC_RUN + ".ckpt",
        code=TRAINING_CODE,
        options=stamp_classifier_options,
    wildcard_constraints:
        run=r"\d+",
    threads: 1
    resources:
        **training_resources("baseline"),
    log:
        SC_DIR + "/logs/{variant}/run-{run}.log",
    conda:
        "../envs/rbda.yaml"
    shell:
        "rbda train --method baseline --source {params.survey}"
        " --data {params.survey}={input.parquets:q}:{input.split:q} --split 0 --seed {params.seed}"
        " --threads {threads} --metrics {output.metrics:q} --checkpoint {params.checkpoint:q}"
        " {params.options} > {log:q} 2>&1"


rule stamp_classifier:
    """Means ± SD and one-sided Welch/Holm tests of the variants' test metrics, beside the published figures."""
    input:
        runs=lambda wildcards: [SC_RUN.format(variant=v, run=r) for v in SC_VARIANTS for r in SC_RUNS]
        if _sc_survey() else [],
    output:
        SC_OUTPUTS,
    params:
        survey=lambda wildcards: SC_SURVEY,
        variants=lambda wildcards: " ".join(f"--variant {v}" for v in SC_VARIANTS),
        runs=lambda wildcards: " ".join(f"--run {v}={SC_RUN.format(variant=v, run=r)}"
                                        for v in SC_VARIANTS for r in SC_RUNS),
    log:
        SC_DIR + "/logs/summary.log",
    conda:
        "../envs/rbda.yaml"
    shell:
        "rbda stamp-classifier --survey {params.survey} {params.variants} {params.runs}"
        " --out-dir " + SC_DIR + " > {log:q} 2>&1"
