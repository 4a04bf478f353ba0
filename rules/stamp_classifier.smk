# The stamp_classifier target (issue 14; RELATED.md E.5): N runs with distinct seeds of each
# configured variant of a multiclass stamp classifier (backbone + confidence penalty) on one
# survey's original classes, then means ± SD and one-sided Welch tests with Holm correction on
# the test metrics (`rbda stamp-classifier`). Only when the config has a `stamp_classifier:`
# section; then `rule all` asks for its outputs too.
#
#   snakemake --profile profiles/local --configfile config.yaml presets/demo.yaml \
#       presets/stamp_classifier.yaml stamp_classifier

import os


rule stamp_classifier_split:
    """One balanced multiclass split: the same validation/test items per class for every run."""
    input:
        lambda wildcards: PARQUET.format(survey=_sc_survey()),
    output:
        SC_SPLIT,
    log:
        f"{SC_LOGS}/split.log",
    conda:
        "../envs/rbda.yaml"
    params:
        seed=config["seed"],
        survey=lambda wildcards: SC_SURVEY,
        val=lambda wildcards: STAMP_CLASSIFIER["val_per_class"],
        test=lambda wildcards: STAMP_CLASSIFIER["test_per_class"],
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
    log:
        f"{SC_LOGS}/{{variant}}/run-{{run}}.log",
    benchmark:
        "logs/benchmarks/stamp_classifier/{variant}/run-{run}.tsv"
    wildcard_constraints:
        run=r"\d+",
    conda:
        "../envs/rbda.yaml"
    threads: 1
    resources:
        **training_resources("baseline"),
    params:
        survey=lambda wildcards: SC_SURVEY,
        seed=lambda wildcards: config["seed"] + int(wildcards.run),
        checkpoint=f"{SC_DIR}/runs/{{variant}}/run-{{run}}.json.ckpt",
        code=lambda wildcards: training_code("baseline", SC_VARIANTS[wildcards.variant]["model"]),
        options=stamp_classifier_options,
    shell:
        "rbda train --method baseline --source {params.survey}"
        " --data {params.survey}={input.parquets:q}:{input.split:q} --split 0 --seed {params.seed}"
        " --threads {threads} --metrics {output.metrics:q} --checkpoint {params.checkpoint:q}"
        " {params.options} > {log:q} 2>&1"


rule stamp_classifier:
    """Means ± SD and one-sided Welch/Holm tests of the variants' test metrics, beside the published figures."""
    input:
        runs=lambda wildcards: (
            [SC_RUN.format(variant=v, run=r) for v in SC_VARIANTS for r in SC_RUNS] if _sc_survey() else []
        ),
    output:
        SC_OUTPUTS,
    log:
        f"{SC_LOGS}/summary.log",
    conda:
        "../envs/rbda.yaml"
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
        survey=lambda wildcards: SC_SURVEY,
        variants=lambda wildcards: " ".join(f"--variant {v}" for v in SC_VARIANTS),
        runs=lambda wildcards: " ".join(
            f"--run {v}={SC_RUN.format(variant=v, run=r)}" for v in SC_VARIANTS for r in SC_RUNS
        ),
    shell:
        "rbda stamp-classifier --survey {params.survey} {params.variants} {params.runs}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"
