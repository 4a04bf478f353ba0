# Aggregation: tables, statistics, figures and the HTML report from every run.


localrules:
    aggregation_inputs,


rule aggregation_inputs:
    """The list of run files and the effective config, as `rbda aggregate` reads them."""
    input:
        runs=all_runs(),
    output:
        runs_list="results/aggregate/runs.txt",
        config="results/aggregate/config.json",
    log:
        "logs/aggregate/inputs.log",
    conda:
        "../envs/rbda.yaml"
    params:
        effective_config=effective_config(),
    script:
        "../workflow/scripts/write_aggregation_inputs.py"


rule aggregate:
    """Tables, statistics, figures and report.html (docs/method.md section 8)."""
    input:
        runs_list="results/aggregate/runs.txt",
        config="results/aggregate/config.json",
        code=reporting_code(),
        data=expand(PARQUET, survey=SURVEYS),  # the stamp galleries
        stamp_classifier=SC_OUTPUTS if STAMP_CLASSIFIER else [],  # its section of report.html
    output:
        report_outputs(),
    log:
        "logs/aggregate/aggregate.log",
    benchmark:
        "logs/benchmarks/aggregate.tsv"
    conda:
        "../envs/rbda.yaml"
    params:
        stamp_classifier=["--stamp-classifier", SC_DIR] if STAMP_CLASSIFIER else [],
    shell:
        "rbda aggregate --runs-list {input.runs_list:q} --config {input.config:q}"
        " --out-dir results {params.stamp_classifier:q} > {log:q} 2>&1"
