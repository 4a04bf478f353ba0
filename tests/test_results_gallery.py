"""Stamp galleries (rbda.results.gallery): classes per survey, a baseline's most confident errors
(recorded in its run JSON), the top- and bottom-scored alerts of `rbda predict`; the report hook."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pyarrow.parquet as pq
import pytest

from rbda.cli import main
from rbda.results import gallery
from rbda.ingest.store import SurveyWriter, load_survey, read_rows
from train_helpers import make_survey, write_survey_parquet

TINY = ["--epoch-size", "50", "--max-epochs", "1", "--patience", "1", "--batch-size", "25", "--val-shots", "5",
        "--threads", "1", "--deterministic"]


def survey_with_classes(tmp_path: Path, name: str = "atlas", n: int = 90) -> Path:
    stamps, labels = make_survey(name, n, seed=3)
    classes = np.where(labels == 1, np.where(np.arange(n) % 3 == 0, "streak", "kast"),
                       np.array(["burn", "cr", "noise"])[np.arange(n) % 3])
    path = tmp_path / f"{name}.parquet"
    with SurveyWriter(path, name, row_group_rows=16) as writer:  # several row groups
        writer.write(stamps, labels, classes, np.array([f"{name}-{i}" for i in range(n)]))
    return path


def titles(fig) -> list[str]:
    """Captions of the drawn triplets (above each template panel), without the channel letter."""
    return [ax.get_title(loc="left").removesuffix("\nT") for ax in fig.get_axes()
            if ax.get_images() and ax.get_title(loc="left")]


def test_read_rows_reads_the_asked_rows_in_order(tmp_path):
    path = survey_with_classes(tmp_path)
    whole = load_survey(path)
    rows = [77, 3, 16, 15, 3]  # across row groups, repeated, unordered
    part = read_rows(path, rows)
    np.testing.assert_array_equal(part.stamps, whole.stamps[rows])
    assert list(part.ids) == [f"atlas-{r}" for r in rows] and list(part.classes) == list(whole.classes[rows])
    with pytest.raises(Exception, match="row 90"):
        read_rows(path, [90])


def test_class_gallery_shows_every_class_with_seeded_picks(tmp_path):
    path = survey_with_classes(tmp_path)
    fig = gallery.class_gallery(path, "atlas", seed=1, per_class=2)
    rows = [sf._suptitle.get_text() for sf in fig.subfigs[1:]]  # [0]: the title band
    assert [r.split(" (")[0] for r in rows] == ["kast", "streak", "burn", "cr", "noise"]  # real classes first
    assert rows[0] == f"kast (real; {int((load_survey(path).classes == 'kast').sum())} stamps)"
    assert len(titles(fig)) == 5 * 2
    again = titles(gallery.class_gallery(path, "atlas", seed=1, per_class=2))
    assert titles(fig) == again != titles(gallery.class_gallery(path, "atlas", seed=2, per_class=2))
    few = gallery.class_gallery(path, "atlas", seed=1, per_class=1, max_classes=2)
    counts = {name: int((load_survey(path).classes == name).sum()) for name in ("burn", "cr", "noise")}
    assert len(few.subfigs) == 1 + 2
    assert "3 more classes not shown: " + ", ".join(f"{k} ({v})" for k, v in counts.items()) in few._suptitle.get_text()
    plt.close("all")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    parquet = write_survey_parquet(root, "des", 240, seed=0, real_fraction=0.5)
    split = root / "split.npz"
    assert main(["split", "--data", str(parquet), "--survey", "des", "--split", "0", "--seed", "7",
                 "--output", str(split)]) == 0
    run = root / "run.json"
    assert main(["train", "--method", "baseline", "--source", "des", "--data", f"des={parquet}:{split}",
                 "--split", "0", "--seed", "7", "--metrics", str(run), "--model", str(root / "m.pt"), *TINY]) == 0
    return {"root": root, "parquet": parquet, "split": split, "run": json.loads(run.read_text()), "model": root / "m.pt"}


def test_baseline_run_records_its_most_confident_test_errors(baseline):
    from rbda.learn.evaluate import CONFIDENT_ERRORS
    from rbda.results.runs import load_run

    run = baseline["run"]
    errors = run["errors"]
    test = set(np.load(baseline["split"])["test"].tolist())
    labels = load_survey(baseline["parquet"]).labels
    own = next(e for e in run["evaluations"] if e["role"] == "source")
    fp, fn = errors["false_positives"], errors["false_negatives"]
    assert (errors["survey"], errors["part"]) == ("des", "test")
    assert len(fp) == min(CONFIDENT_ERRORS, own["fp"]) and len(fn) == min(CONFIDENT_ERRORS, own["fn"])
    assert fp or fn  # one epoch of 50 stamps: errors there are
    assert all(e["row"] in test for e in fp + fn)
    assert all(labels[e["row"]] == 0 and e["p_real"] >= 0.5 for e in fp)
    assert all(labels[e["row"]] == 1 and e["p_real"] <= 0.5 for e in fn)
    assert [e["p_real"] for e in fp] == sorted((e["p_real"] for e in fp), reverse=True)
    assert [e["p_real"] for e in fn] == sorted(e["p_real"] for e in fn)
    load_run(baseline["root"] / "run.json")  # the run schema accepts it


def test_errors_gallery_draws_the_recorded_errors(baseline, tmp_path):
    run = baseline["run"]
    fig = gallery.errors_gallery(baseline["parquet"], run)
    shown = titles(fig)
    expected = [e for k in ("false_positives", "false_negatives") for e in run["errors"][k]]
    assert len(shown) == len(expected)
    assert all(t.startswith(f"p_real {e['p_real']:.3f}\ndes-{e['row']}") for t, e in zip(shown, expected))
    old = {k: v for k, v in run.items() if k != "errors"}
    assert "records no 'errors'" in gallery.errors_gallery(baseline["parquet"], old, "old.json")._suptitle.get_text()
    plt.close("all")


def test_gallery_command_draws_top_and_bottom_scored_alerts(baseline, tmp_path):
    scores = tmp_path / "scores.parquet"
    assert main(["predict", "--model", str(baseline["model"]), "--input", str(baseline["parquet"]),
                 "--output", str(scores)]) == 0
    fig = gallery.scores_gallery(scores, [baseline["parquet"]], per_end=3)
    table = pq.read_table(scores).to_pandas().sort_values("p_real", ascending=False, kind="stable")
    top, bottom = table.head(3), table.iloc[::-1].head(3)
    shown = titles(fig)
    assert shown == [f"p_real {p:.3f}\n{i}" for p, i in zip([*top.p_real, *bottom.p_real], [*top.id, *bottom.id])]
    out = tmp_path / "g.png"
    assert main(["gallery", "--scores", str(scores), "--input", str(baseline["parquet"]), "--per-end", "2",
                 "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = write_survey_parquet(tmp_path, "hits", 30, seed=5)
    assert main(["gallery", "--scores", str(scores), "--input", str(other), "--output", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()
    plt.close("all")


def test_aggregate_adds_the_galleries_when_the_config_names_the_data(baseline, tmp_path):
    from rbda.results.aggregate import aggregate
    from rbda.results.outputs import expected_outputs, gallery_path
    from results_helpers import fabricate_study

    runs_list, config = fabricate_study(tmp_path, ["hits", "des"], splits=1, shots=[1], lambdas=[0.1])
    first = tmp_path / "runs" / "baseline" / "des" / "split-0.json"
    data = json.loads(first.read_text())
    data["errors"] = baseline["run"]["errors"]
    first.write_text(json.dumps(data))
    parquets = {"des": str(baseline["parquet"]), "hits": str(write_survey_parquet(tmp_path, "hits", 40, seed=2))}
    settings = json.loads(config.read_text())
    config.write_text(json.dumps({"study": {**settings, "data": parquets}, "config": {"seed": 5}}))
    written = aggregate(runs_list, config, tmp_path / "out")
    relative = sorted(str(p.relative_to(tmp_path / "out")) for p in written)
    assert relative == sorted(expected_outputs(["hits", "des"], None, galleries=True))
    assert gallery_path("des", "errors") in relative
    report = (tmp_path / "out" / "report.html").read_text()
    assert 'id="gallery"' in report and "the baseline&#x27;s most confident errors" in report
    bare = json.loads(config.read_text())["study"]
    del bare["data"]
    config.write_text(json.dumps(bare))
    assert len(aggregate(runs_list, config, tmp_path / "bare")) == len(expected_outputs(["hits", "des"]))
