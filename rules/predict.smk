# Optional: score alerts with trained models (config `predict`; `rbda predict`). One job per
# (model, input): results/predictions/{model id}/{input name}.parquet. Target `predict`.

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
            model_id = (
                entry[len(MODELS_ROOT) : -len(".pt")] if entry.startswith(MODELS_ROOT) else Path(entry).stem
            )
        else:
            model_id, path = entry.strip("/"), f"{MODELS_ROOT}{entry.strip('/')}.pt"
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
        name = Path(entry.rstrip("/")).name.split(".")[0]
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


def prediction_outputs():
    """Every scores table config `predict` asks for (none when it is absent)."""
    return [PREDICTION.format(model_id=m, input_name=i) for m in PREDICT_MODELS for i in PREDICT_INPUTS]


rule predict_alerts:
    """Score one input's alerts with one model (p_real, predicted label, the model's identity)."""
    input:
        model=lambda wildcards: PREDICT_MODELS[wildcards.model_id],
        data=lambda wildcards: PREDICT_INPUTS[wildcards.input_name],
    output:
        scores=PREDICTION,
        # `rbda predict --skip-bad` lists the packets it could not score beside the scores
        **({"bad": "results/predictions/{model_id}/{input_name}.bad.csv"} if PREDICT["skip_bad"] else {}),
    params:
        threshold=PREDICT["threshold"],
        skip_bad="--skip-bad" if PREDICT["skip_bad"] else "",
        device=TRAINING["device"],
    threads: 1
    log:
        "logs/predictions/{model_id}/{input_name}.log",
    benchmark:
        "logs/benchmarks/predictions/{model_id}/{input_name}.tsv"
    wildcard_constraints:
        model_id=one_of([re.escape(m) for m in PREDICT_MODELS]),
        input_name=one_of([re.escape(i) for i in PREDICT_INPUTS]),
    conda:
        "../envs/rbda.yaml"
    shell:
        "rbda predict --model {input.model:q} --input {input.data:q} --output {output.scores:q}"
        " --threshold {params.threshold} --device {params.device} --threads {threads} {params.skip_bad}"
        " > {log:q} 2>&1"


rule predict:
    """Every scores table of config `predict` (nothing when it is absent)."""
    input:
        prediction_outputs(),
