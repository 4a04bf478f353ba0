# Choice of the entropy weight lambda of every lambda method (rbda.registry.LAMBDA_METHODS:
# the methods declared with lambda_grid): one selected run per (source, target, shots, split),
# {method}-selected, the lambda chosen by the configured rule (per_pair: once per pair and method,
# per split on the runs of the splits whose validation items avoid that split's test part).


# Reading the pair's runs' JSON files takes about a second: run by Snakemake itself.
localrules:
    choose_lambda,


rule choose_lambda:
    """A pair's lambda per split on its runs' target-validation BACC, never on the split's own test
    items (rules per_pair, first_split)."""
    input:
        unpack(choice_inputs),
    output:
        LAMBDA_CHOICE,
    log:
        "logs/lambda-choices/{method}/{source}-to-{target}.log",
    wildcard_constraints:
        method=one_of(LAMBDA_METHODS),
    conda:
        "../envs/rbda.yaml"
    params:
        rule=LAMBDA_SELECTION,
        splits=lambda wildcards, input: [f"{k}={path}" for k, path in zip(SPLITS, input.splits)],
    shell:
        "rbda choose-lambda --runs {input.runs:q} --target-data {input.data:q} --target-split {params.splits:q}"
        " --rule {params.rule} --output {output:q} > {log:q} 2>&1"


rule select_lambda:
    """Keep the run whose lambda has the best target-validation BACC (rule from config)."""
    input:
        unpack(selection_inputs),
    output:
        run_json("{method}-selected"),
    log:
        run_log("{method}-selected"),
    wildcard_constraints:
        method=one_of(LAMBDA_METHODS),
    conda:
        "../envs/rbda.yaml"
    params:
        rule=LAMBDA_SELECTION,
        choice=lambda wildcards, input: ["--choice", input.choice] if "choice" in input.keys() else [],
    shell:
        "rbda select-lambda --runs {input.runs:q} --rule {params.rule}"
        " {params.choice:q} --output {output:q} > {log:q} 2>&1"


# A file copy of seconds: run by Snakemake itself, never a cluster job of its own.
localrules:
    select_model,


rule select_model:
    """The selected run's model file: a copy of the chosen lambda's (config save_models: NAME-selected)."""
    input:
        selected=run_json("{method}-selected"),
        models=lambda_models,
    output:
        model_file("{method}-selected"),
    log:
        f"logs/models/{{method}}-selected/{run_id('{method}-selected')}.log",
    wildcard_constraints:
        method=one_of([m for m in LAMBDA_METHODS if f"{m}{SELECTED_SUFFIX}" in SAVE_MODELS]),
    conda:
        "../envs/rbda.yaml"
    shell:
        "rbda select-model --selected {input.selected:q} --models {input.models:q}"
        " --output {output:q} > {log:q} 2>&1"
