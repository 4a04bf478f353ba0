# Raw data (synthetic, downloaded or local), preprocessing and splits.


# Run by Snakemake itself, not submitted to a cluster: on Slurm, compute nodes
# often have no internet access (downloads) and these jobs need seconds.
localrules:
    download_survey,
    register_local_survey,


rule synthesize_survey:
    """A synthetic survey in the real survey's raw layout (source: synthetic)."""
    output:
        directory("resources/raw/{survey}"),
    log:
        "logs/raw/{survey}.synthesize.log",
    wildcard_constraints:
        survey=one_of(SURVEYS_BY_SOURCE["synthetic"]),
    conda:
        "../envs/rbda.yaml"
    params:
        size=lambda wildcards: config["surveys"][wildcards.survey]["synthetic_size"],
        seed=config["seed"],
    shell:
        "rbda synth --survey {wildcards.survey} --n {params.size} --seed {params.seed}"
        " --out {output:q} > {log:q} 2>&1"


rule download_survey:
    """Download the survey's archive (retries, resume, sha256) and unpack it (source: url)."""
    output:
        archive="resources/raw/archives/{survey}.download",
        unpacked=directory("resources/raw/{survey}"),
    log:
        "logs/raw/{survey}.download.log",
    wildcard_constraints:
        survey=one_of(SURVEYS_BY_SOURCE["url"]),
    conda:
        "../envs/rbda.yaml"
    params:
        url=lambda wildcards: config["surveys"][wildcards.survey]["url"],
        checksum=lambda wildcards: (
            ["--sha256", config["surveys"][wildcards.survey]["sha256"]]
            if config["surveys"][wildcards.survey].get("sha256")
            else []
        ),
    shell:
        "rbda download --url {params.url:q} {params.checksum:q} --output {output.archive:q}"
        " --unpack-to {output.unpacked:q} > {log:q} 2>&1"


rule register_local_survey:
    """Check a local source (source: path) and record what it holds; needs no data at planning time."""
    output:
        "resources/raw/{survey}.local.json",
    log:
        "logs/raw/{survey}.register.log",
    wildcard_constraints:
        survey=one_of(SURVEYS_BY_SOURCE["path"]),
    conda:
        "../envs/rbda.yaml"
    params:
        paths=lambda wildcards: local_paths(wildcards.survey),
    script:
        "../workflow/scripts/register_local_source.py"


rule write_survey_packets:
    """The survey's raw stamps as alert packets of a declared layout (config surveys.S.packets), one per file."""
    input:
        raw=raw_input,
    output:
        directory(PACKETS),
    log:
        "logs/raw/{survey}.packets.log",
    wildcard_constraints:
        survey=one_of(SURVEYS_WITH_PACKETS),
    conda:
        "../envs/rbda.yaml"
    params:
        inputs=preprocess_inputs,
        options=packet_options,
    shell:
        "rbda packets --survey {wildcards.survey} --input {params.inputs:q} --out {output:q}"
        " {params.options:q} > {log:q} 2>&1"


rule preprocess_survey:
    """Filter, crop to 21x21, normalise and fill: one Parquet file per survey."""
    input:
        raw=raw_input,
    output:
        parquet=PARQUET,
        report="results/data/{survey}.report.json",
    log:
        "logs/data/{survey}.preprocess.log",
    benchmark:
        "logs/benchmarks/data/{survey}.preprocess.tsv"
    conda:
        "../envs/rbda.yaml"
    resources:
        mem_mb=8000,
        runtime=lambda wildcards, attempt: 120 * attempt,
    params:
        inputs=preprocess_inputs,
        options=preprocess_options,
        code=DATA_PREPARATION_CODE,
        declaration=survey_declaration,
    shell:
        "rbda preprocess --survey {wildcards.survey} --input {params.inputs:q}"
        " --output {output.parquet:q} --report {output.report:q} {params.options:q}"
        " > {log:q} 2>&1"


rule split_survey:
    """One stratified 80/10/10 train/validation/test split of a survey."""
    input:
        PARQUET,
    output:
        SPLIT_NPZ,
    log:
        "logs/splits/{survey}/split-{split}.log",
    conda:
        "../envs/rbda.yaml"
    params:
        seed=config["seed"],
    shell:
        "rbda split --data {input:q} --survey {wildcards.survey} --split {wildcards.split}"
        " --seed {params.seed} --output {output:q} > {log:q} 2>&1"
