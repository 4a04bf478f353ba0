# The config's `predict:` section checked and turned into the scoring jobs' models, inputs and
# outputs (rules/predict.smk).

import re
from pathlib import Path

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
            model_id = entry[len(MODELS_ROOT) : -len(".pt")] if entry.startswith(MODELS_ROOT) else Path(entry).stem
        else:
            model_id = str(Path(entry))  # without a trailing slash
            path = f"{MODELS_ROOT}{model_id}.pt"
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
        name = Path(entry).name.split(".")[0]
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


PREDICTION_GALLERY = "results/predictions/{model_id}/{input_name}.gallery.png"


def prediction_outputs():
    """Every scores table config `predict` asks for, and its gallery (none when it is absent)."""
    return [
        path.format(model_id=m, input_name=i)
        for m in PREDICT_MODELS
        for i in PREDICT_INPUTS
        for path in (PREDICTION, PREDICTION_GALLERY)
    ]
