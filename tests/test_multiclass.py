"""task: multiclass: balanced splits, K-class balanced batches, a multiclass baseline run (rbda.ingest.multiclass)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rbda.learn.data import BalancedSampler, SurveyTensors
from rbda.errors import InputFileError, RbdaError, SettingError
from rbda.ingest.multiclass import balanced_split, check_balanced, class_indices
from rbda.ingest.splits import Split
from rbda.study import SURVEY_CLASSES

ZTF = SURVEY_CLASSES["ztf"]


def test_class_order_is_fixed_and_unknown_classes_named(tmp_path):
    assert ZTF == ("AGN", "SN", "VS", "asteroid", "bogus")
    assert class_indices(np.array(["bogus", "AGN", "SN"]), "ztf", "f").tolist() == [4, 0, 1]
    with pytest.raises(InputFileError, match="f.*got \\['galaxy'\\]"):
        class_indices(np.array(["galaxy"]), "ztf", "f")
    with pytest.raises(SettingError, match="task.*survey 'hits'"):
        class_indices(np.array(["real"]), "hits", "f")


def test_balanced_split_counts_and_determinism():
    labels = np.repeat(np.arange(5), [40, 12, 30, 25, 60])
    split = balanced_split(labels, "ztf", 0, 7, val_per_class=4, test_per_class=3)
    assert np.bincount(labels[split.val]).tolist() == [4] * 5
    assert np.bincount(labels[split.test]).tolist() == [3] * 5
    assert np.bincount(labels[split.train]).tolist() == [33, 5, 23, 18, 53]
    every = np.concatenate([split.train, split.val, split.test])
    assert np.array_equal(np.sort(every), np.arange(labels.size))  # disjoint and complete
    again = balanced_split(labels, "ztf", 0, 7, val_per_class=4, test_per_class=3)
    assert np.array_equal(again.test, split.test)
    assert not np.array_equal(balanced_split(labels, "ztf", 1, 7, 4, 3).test, split.test)
    check_balanced(split, labels, "ztf", "split.npz")


def test_too_few_items_in_a_class_names_survey_class_count_and_need():
    labels = np.repeat(np.arange(5), [400, 301, 299, 400, 400])
    with pytest.raises(RbdaError, match="survey 'ztf': class 'VS' has 299 items; .* needs 301 "
                                        "\\(200 validation \\+ 100 test"):
        balanced_split(labels, "ztf", 0, 1)


def test_a_binary_split_is_refused_for_a_multiclass_run():
    labels = np.repeat(np.arange(5), 10)
    unbalanced = Split(train=np.arange(0, 40), val=np.arange(40, 45), test=np.arange(45, 50), n_rows=50, seed=0)
    with pytest.raises(InputFileError, match="split.npz.*multiclass split.*val part"):
        check_balanced(unbalanced, labels, "ztf", "split.npz")


def _survey(labels):
    n = len(labels)
    return SurveyTensors("ztf", torch.zeros(n, 3, 21, 21), torch.as_tensor(labels, dtype=torch.int64),
                         np.asarray(labels, np.int8), Split(np.arange(n), np.arange(0), np.arange(0), n, 0))


def test_binary_draw_is_the_studys_bit_for_bit():
    """The generalised sampler with two classes draws exactly what the binary-only sampler drew."""
    labels = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1])
    idx = np.arange(10)
    got = BalancedSampler(_survey(labels), idx, "train").draw((7, 5), torch.Generator().manual_seed(3))
    # the binary sampler before the generalisation, verbatim
    per_class = [idx[labels == c] for c in (0, 1)]
    rows = torch.as_tensor(np.concatenate(per_class))
    offsets = torch.tensor([0, per_class[0].size])
    counts = torch.tensor([per_class[0].size, per_class[1].size])
    generator = torch.Generator().manual_seed(3)
    cls = torch.randint(0, 2, (7, 5), generator=generator)
    u = torch.rand((7, 5), generator=generator)
    expected = rows[offsets[cls] + (u * counts[cls]).long().clamp_max_(counts[cls] - 1)]
    assert torch.equal(got, expected)
    assert got[0].tolist() == expected[0].tolist()


def test_k_class_draw_is_balanced():
    labels = np.repeat(np.arange(5), [200, 5, 50, 20, 1])
    sampler = BalancedSampler(_survey(labels), np.arange(labels.size), "train", classes=range(5))
    drawn = labels[sampler.draw((20_000,), torch.Generator().manual_seed(0)).numpy()]
    shares = np.bincount(drawn, minlength=5) / drawn.size
    np.testing.assert_allclose(shares, 0.2, atol=0.015)
    with pytest.raises(RbdaError, match="no items of class 4"):
        BalancedSampler(_survey(labels[:-1]), np.arange(labels.size - 1), "train", classes=range(5))


def write_five_class_ztf(path, per_class=(60, 40, 50, 45, 70), seed=0):
    """A preprocessed ZTF file whose five classes differ in where the difference image's blob is."""
    from rbda.ingest.store import write_survey

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(5), per_class)
    n = labels.size
    stamps = rng.normal(0, 0.3, (n, 3, 21, 21)).astype(np.float32)
    y, x = np.mgrid[:21, :21]
    centres = [(5, 5), (15, 15), (5, 15), (15, 5), (10, 10)]
    for k, (cy, cx) in enumerate(centres):
        stamps[labels == k, 2] += 3 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 4.0)
    classes = np.array(ZTF)[labels]
    write_survey(path, "ztf", stamps, (labels != 4).astype(np.int8), classes, np.arange(n).astype(str))
    return labels


def test_multiclass_baseline_run_records_test_metrics(tmp_path):
    from rbda.cli import main

    parquet = tmp_path / "ztf.parquet"
    write_five_class_ztf(parquet)
    split = tmp_path / "mc.npz"
    assert main(["split", "--data", str(parquet), "--survey", "ztf", "--split", "0", "--seed", "1",
                 "--output", str(split), "--task", "multiclass", "--val-per-class", "8",
                 "--test-per-class", "6"]) == 0
    out = tmp_path / "run.json"
    args = ["train", "--method", "baseline", "--source", "ztf", "--data", f"ztf={parquet}:{split}",
            "--split", "0", "--seed", "1", "--metrics", str(out), "--task", "multiclass",
            "--epoch-size", "200", "--max-epochs", "4", "--batch-size", "20", "--device", "cpu"]
    assert main(args) == 0
    record = json.loads(out.read_text())
    assert record["hyperparameters"]["task"] == "multiclass"
    assert record["data"]["classes"] == list(ZTF)
    (evaluation,) = record["evaluations"]
    metrics = evaluation["multiclass"]
    assert metrics["n"] == 30 and [r["support"] for r in metrics["per_class"].values()] == [6] * 5
    assert metrics["accuracy"] > 0.5 and evaluation["bacc"] == pytest.approx(metrics["balanced_accuracy"])
    assert "f2" in metrics["per_class"]["SN"]
    # a binary (80/10/10) split is refused for a multiclass run, naming the file
    binary = tmp_path / "binary.npz"
    assert main(["split", "--data", str(parquet), "--survey", "ztf", "--split", "0", "--seed", "1",
                 "--output", str(binary)]) == 0
    bad = [a.replace(str(split), str(binary)) for a in args]
    assert main(bad) == 2
    # no model file: model files are real/bogus classifiers (FT, MME, rbda predict)
    assert main(args + ["--model", str(tmp_path / "m.pt")]) == 2 and not (tmp_path / "m.pt").exists()
    # multiclass is for the baseline only
    assert main(["train", "--method", "finetune", "--source", "ztf", "--target", "atlas", "--shots", "1",
                 "--data", f"ztf={parquet}:{split}", "--split", "0", "--seed", "1", "--metrics",
                 str(tmp_path / "ft.json"), "--task", "multiclass"]) == 2
