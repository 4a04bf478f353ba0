# Optional: score alerts with trained models (config `predict`; `rbda predict`). One job per
# (model, input): results/predictions/{model id}/{input name}.parquet. Target `predict`.


rule predict_alerts:
    """Score one input's alerts with one model (p_real, predicted label, the model's identity)."""
    input:
        model=lambda wildcards: PREDICT_MODELS[wildcards.model_id],
        data=lambda wildcards: PREDICT_INPUTS[wildcards.input_name],
    # with `rbda predict --skip-bad`, the packets it could not score are listed beside the scores
    output:
        **({"bad": "results/predictions/{model_id}/{input_name}.bad.csv"} if PREDICT["skip_bad"] else {}),
        scores=PREDICTION,
    log:
        "logs/predictions/{model_id}/{input_name}.log",
    benchmark:
        "logs/benchmarks/predictions/{model_id}/{input_name}.tsv"
    wildcard_constraints:
        model_id=one_of([re.escape(m) for m in PREDICT_MODELS]),
        input_name=one_of([re.escape(i) for i in PREDICT_INPUTS]),
    conda:
        "../envs/rbda.yaml"
    threads: 1
    params:
        threshold=PREDICT["threshold"],
        skip_bad="--skip-bad" if PREDICT["skip_bad"] else "",
        device=TRAINING["device"],
        # the readers' and preprocessing's code hash: editing them rescores, as it re-preprocesses
        code=DATA_PREPARATION_CODE,
    shell:
        "rbda predict --model {input.model:q} --input {input.data:q} --output {output.scores:q}"
        " --threshold {params.threshold} --device {params.device} --threads {threads} {params.skip_bad}"
        " > {log:q} 2>&1"


rule prediction_gallery:
    """The top- and bottom-scored alerts of one scores table, as stamps (rbda gallery)."""
    input:
        scores=PREDICTION,
        data=lambda wildcards: PREDICT_INPUTS[wildcards.input_name],
    output:
        report(PREDICTION_GALLERY, caption=f"{REPORT_CAPTIONS}/prediction_gallery.rst", category="Predictions"),
    log:
        "logs/predictions/{model_id}/{input_name}.gallery.log",
    wildcard_constraints:
        model_id=one_of([re.escape(m) for m in PREDICT_MODELS]),
        input_name=one_of([re.escape(i) for i in PREDICT_INPUTS]),
    conda:
        "../envs/rbda.yaml"
    shell:
        "rbda gallery --scores {input.scores:q} --input {input.data:q} --output {output:q} > {log:q} 2>&1"


rule predict:
    """Every scores table of config `predict` (nothing when it is absent)."""
    input:
        prediction_outputs(),
