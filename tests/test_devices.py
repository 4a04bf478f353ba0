"""Training and evaluation on each device: CPU always, CUDA where torch sees a GPU.

The same checks run per device: data and model live on the device with its
default memory layout, the same seed gives the same numbers in
deterministic mode, an interrupted run resumes to the same numbers, and a
model trained there evaluates on the CPU with the same results up to
rounding. The CUDA cases skip where torch sees no GPU (the development
machine and CI have none); on a GPU node run
``RBDA_REQUIRE_CUDA=1 pytest -m cuda``, which makes a GPU that torch
cannot see a failure instead of a skip.
"""

from __future__ import annotations

import io
import json
import os

import pytest
import torch

from rbda.cli import main
from rbda.learn.methods import method_class
from rbda.learn.methods.base import RunSpec
from rbda.device import configure_torch
from rbda.learn.evaluate import evaluate_method
from rbda.learn.train import TrainConfig, train
from train_helpers import survey_data, write_survey_parquet

NO_GPU = "no CUDA device visible to torch; run `RBDA_REQUIRE_CUDA=1 pytest -m cuda` on a GPU machine"
DEFAULT_LAYOUT = {"cpu": "channels_last", "cuda": "contiguous"}  # what memory_format auto must give

ARGS = ["--epoch-size", "500", "--max-epochs", "4", "--patience", "4", "--deterministic", "--seed", "7",
        "--split", "0"]


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        if os.environ.get("RBDA_REQUIRE_CUDA") == "1":
            pytest.fail(f"RBDA_REQUIRE_CUDA=1 but torch {torch.__version__} sees no CUDA device")
        pytest.skip(NO_GPU)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    configure_torch(threads=1 if request.param == "cpu" else None, deterministic=True)
    yield torch.device(request.param)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


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
    surveys = make_surveys()
    result, history, evaluations = _fit(surveys)
    layout = DEFAULT_LAYOUT[device.type]
    assert result.device == device.type and result.memory_format == layout
    first_conv = result.model.backbone.conv[0].weight
    assert first_conv.device.type == device.type
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert first_conv.is_contiguous(memory_format=memory_format)
    assert all(s.stamps.is_contiguous(memory_format=memory_format) for s in surveys.values())
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
    assert record["training"]["memory_format"] == DEFAULT_LAYOUT[device.type]

    on_cpu = tmp_path / "eval-cpu.json"
    assert main(["evaluate", "--model", str(model), *data, "--output", str(on_cpu), "--device", "cpu"]) == 0
    for trained, cpu in zip(record["evaluations"], json.loads(on_cpu.read_text())["evaluations"]):
        assert trained["survey"] == cpu["survey"] and trained["n"] == cpu["n"]
        assert abs(trained["bacc"] - cpu["bacc"]) <= 2 / trained["n"]  # at most a borderline stamp or two flips
