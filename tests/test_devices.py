"""Training and evaluation on each device: CPU always, CUDA where torch sees a GPU.

The same checks run per device: data and model live on the device with its
default memory layout, the same seed gives the same numbers in
deterministic mode, an interrupted run resumes to the same numbers, and a
model trained there evaluates on the CPU with the same results up to
rounding. The CUDA cases skip where torch sees no GPU (the development
machine and CI have none); on a GPU node run ``pytest -m cuda``.
"""

from __future__ import annotations

import io
import json

import pytest
import torch

from rbda.cli import main
from rbda.methods import method_class
from rbda.methods.base import RunSpec
from rbda.train import TrainConfig, configure_torch, evaluate_method, resolve_memory_format, train
from test_train_support import survey_data, write_survey_parquet

NO_GPU = "no CUDA device visible to torch; run `pytest -m cuda` on a GPU machine"

ARGS = ["--epoch-size", "500", "--max-epochs", "4", "--patience", "4", "--deterministic", "--seed", "7",
        "--split", "0"]


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=[
    pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)])])
def device(request):
    configure_torch(threads=1 if request.param == "cpu" else None, deterministic=True)
    yield torch.device(request.param)
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def make_surveys(device):
    """New surveys on ``device`` per call (training converts their layout in place)."""
    def make():
        surveys = {name: survey_data(name, 800, seed) for seed, name in enumerate(("des", "hits"), 1)}
        for survey in surveys.values():
            survey.stamps, survey.labels = survey.stamps.to(device), survey.labels.to(device)
        return surveys
    return make


def _fit(surveys, method="baseline", **kwargs):
    spec = (RunSpec("baseline", "des", None, 0, seed=4) if method == "baseline"
            else RunSpec("mme", "des", "hits", 0, seed=4, shots=5, lam=0.1))
    m = method_class(method)(spec, surveys)
    config = TrainConfig(epoch_size=300, max_epochs=4, patience=10, checkpoint_every_epochs=2)
    result = train(m, config, progress_stream=io.StringIO(), **kwargs)
    return result, result.state.history, evaluate_method(m, result.model)


def test_training_runs_on_the_device_with_its_default_layout(device, make_surveys):
    result, history, evaluations = _fit(make_surveys())
    assert result.device == device.type
    assert result.memory_format == resolve_memory_format("auto", device)
    assert next(result.model.parameters()).device.type == device.type
    assert history[-1]["val_bacc"] > 0.7  # the synthetic survey is easy to learn
    assert {e["survey"] for e in evaluations} == {"des", "hits"}


def test_same_seed_same_numbers_on_the_device(make_surveys):
    assert _fit(make_surveys())[1:] == _fit(make_surveys())[1:]


@pytest.mark.parametrize("method", ["baseline", "mme"])
def test_interrupted_run_on_the_device_resumes_to_the_same_numbers(make_surveys, tmp_path, method):
    init = None if method == "baseline" else _fit(make_surveys())[0].model.state_dict()
    whole = _fit(make_surveys(), method, init_state=init)[1:]
    checkpoint = tmp_path / "run.ckpt"

    def stop_after_epoch_3(epoch):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(make_surveys(), method, init_state=init, checkpoint=checkpoint, on_epoch_end=stop_after_epoch_3)
    resumed = _fit(make_surveys(), method, init_state=init, checkpoint=checkpoint)
    assert resumed[0].resumed_from_epoch == 2
    assert resumed[1:] == whole


def test_cli_trains_on_the_device_and_the_model_evaluates_on_cpu(device, tmp_path):
    data = []
    for i, name in enumerate(("des", "hits")):
        parquet = write_survey_parquet(tmp_path, name, 600, seed=i)
        split = tmp_path / f"{name}-split-0.npz"
        assert main(["split", "--data", str(parquet), "--survey", name, "--split", "0", "--seed", "7",
                     "--output", str(split)]) == 0
        data += ["--data", f"{name}={parquet}:{split}"]
    metrics, model = tmp_path / "baseline.json", tmp_path / "baseline.pt"
    assert main(["train", "--method", "baseline", "--source", "des", "--device", device.type, *data, *ARGS,
                 "--metrics", str(metrics), "--model", str(model)]) == 0
    record = json.loads(metrics.read_text())
    assert record["training"]["device"] == device.type
    assert record["training"]["memory_format"] == resolve_memory_format("auto", device)

    on_cpu = tmp_path / "eval-cpu.json"
    assert main(["evaluate", "--model", str(model), *data, "--output", str(on_cpu), "--device", "cpu"]) == 0
    for trained, cpu in zip(record["evaluations"], json.loads(on_cpu.read_text())["evaluations"]):
        assert trained["survey"] == cpu["survey"] and trained["n"] == cpu["n"]
        assert abs(trained["bacc"] - cpu["bacc"]) <= 2 / trained["n"]  # at most a borderline stamp or two flips
