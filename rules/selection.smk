# Choice of the MME entropy weight lambda: one selected run per (source, target, shots, split),
# the lambda chosen by the configured rule (per_pair: on every MME run of the pair).


rule select_lambda:
    """Keep the MME run whose lambda has the best target-validation BACC (rule from config)."""
    input:
        unpack(selection_inputs),
    output:
        run_json("mme-selected"),
    params:
        rule=LAMBDA_SELECTION,
        reference=lambda wildcards, input: (
            ["--reference-runs", *input.reference] if "reference" in input.keys() else []
        ),
    log:
        run_log("mme-selected"),
    conda:
        "../envs/rbda.yaml"
    shell:
        "rbda select-lambda --runs {input.runs:q} --rule {params.rule}"
        " {params.reference:q} --output {output:q} > {log:q} 2>&1"
