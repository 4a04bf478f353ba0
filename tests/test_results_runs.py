"""Run JSON validation and lambda selection (rbda select-lambda)."""

from __future__ import annotations

import json

import pytest
from results_helpers import adapted_run, baseline_run, write

from rbda.cli import main
from rbda.errors import InputFileError, SettingError
from rbda.results.runs import load_run, load_runs, read_runs_list
from rbda.results.selection import select_lambda


def mme(split=0, lam=0.1, val=0.9, shots=5, source="des", target="hits"):
    return adapted_run("mme", source, target, split, shots, 0.9, 0.8, lam=lam, val_bacc=val)


def test_valid_run_loads(tmp_path):
    run = load_run(write(tmp_path / "b.json", baseline_run("des", 0, {"des": 0.9, "hits": 0.7})))
    assert (run.kind, run.source, run.split) == ("baseline", "des", 0)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("evaluations"), "'evaluations' is a required property"),
    (lambda d: d.update(schema="rbda.run/2"), "schema"),
    (lambda d: d.update(method="cdac"), "method"),
    (lambda d: d["validation"].pop("best_bacc"), "best_bacc"),
    (lambda d: d["evaluations"][0].update(bacc=1.5), "bacc"),
    (lambda d: d.__setitem__("lambda", None), "mme run has a lambda"),
    (lambda d: d.update(target="des"), "target survey different from its source"),
    (lambda d: d.update(evaluations=d["evaluations"][:1]), "'hits' with role 'target'"),
    (lambda d: d["evaluations"].append(dict(d["evaluations"][1])), "one test evaluation per survey"),
    (lambda d: d.update(selection={"rule": "per_split", "chosen_lambda": 5.0,
                                   "candidates": [{"lambda": 5.0, "val_bacc": 0.9}]}),
     "chosen_lambda equals the run's lambda"),
])
def test_invalid_run_names_file_and_expectation(tmp_path, mutate, message):
    data = mme()
    mutate(data)
    path = write(tmp_path / "bad.json", data)
    with pytest.raises(InputFileError) as info:
        load_run(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_nan_accuracy_is_rejected(tmp_path):
    data = mme()
    data["validation"]["best_bacc"] = float("nan")
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(data))  # json writes NaN, which json.loads accepts
    with pytest.raises(InputFileError, match="finite balanced accuracies"):
        load_run(path)


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(InputFileError, match="valid JSON"):
        load_run(bad)
    with pytest.raises(InputFileError, match="an existing run JSON file"):
        load_run(tmp_path / "absent.json")


def test_duplicate_runs_are_rejected_naming_both(tmp_path):
    a = write(tmp_path / "a.json", mme())
    b = write(tmp_path / "b.json", mme(val=0.5))
    with pytest.raises(InputFileError) as info:
        load_runs([a, b])
    assert str(a) in str(info.value) and str(b) in str(info.value)


def test_runs_list_reports_missing_line(tmp_path):
    a = write(tmp_path / "a.json", mme())
    listing = tmp_path / "runs.txt"
    listing.write_text(f"# comment\n{a}\n\n{tmp_path / 'gone.json'}\n")
    with pytest.raises(InputFileError, match="line 4"):
        read_runs_list(listing)
    listing.write_text(f"{a}\n")
    assert read_runs_list(listing) == [a]
    listing.write_text("# nothing\n\n")
    with pytest.raises(InputFileError, match="at least one run JSON path"):
        read_runs_list(listing)


def test_per_split_picks_best_validation_and_ties_go_to_smaller_lambda(tmp_path):
    runs = load_runs([write(tmp_path / f"{lam}.json", mme(lam=lam, val=val))
                      for lam, val in ((0.01, 0.80), (0.1, 0.92), (1.0, 0.92), (10.0, 0.5))])
    selected = select_lambda(runs)
    assert selected["lambda"] == 0.1
    assert selected["selection"] == {
        "rule": "per_split", "chosen_lambda": 0.1,
        "candidates": [{"lambda": 0.01, "val_bacc": 0.80}, {"lambda": 0.1, "val_bacc": 0.92},
                       {"lambda": 1.0, "val_bacc": 0.92}, {"lambda": 10.0, "val_bacc": 0.5}]}
    assert "selection" not in runs[1].data  # the input run is not modified


def test_first_split_chooses_on_reference_and_takes_current_split_run(tmp_path):
    reference = load_runs([write(tmp_path / f"r{lam}.json", mme(split=0, lam=lam, val=val))
                           for lam, val in ((0.1, 0.95), (1.0, 0.90))])
    current = load_runs([write(tmp_path / f"c{lam}.json", mme(split=3, lam=lam, val=val))
                         for lam, val in ((0.1, 0.70), (1.0, 0.99))])
    selected = select_lambda(current, "first_split", reference)
    assert (selected["split"], selected["lambda"]) == (3, 0.1)
    assert selected["selection"]["reference_split"] == 0
    assert [c["val_bacc"] for c in selected["selection"]["candidates"]] == [0.95, 0.90]
    with pytest.raises(SettingError, match="reference"):
        select_lambda(current, "first_split", None)


def test_selection_rejects_a_run_of_another_identity(tmp_path):
    good = write(tmp_path / "good.json", mme(lam=0.1))
    odd = write(tmp_path / "odd.json", mme(lam=1.0, shots=20))
    with pytest.raises(InputFileError) as info:
        select_lambda(load_runs([good, odd]))
    assert str(odd) in str(info.value) and "shots=20" in str(info.value)
    ft = write(tmp_path / "ft.json", adapted_run("finetune", "des", "hits", 0, 5, 0.9, 0.8))
    with pytest.raises(InputFileError, match="got a finetune run"):
        select_lambda(load_runs([good, ft]))


def test_cli_writes_selected_run_and_leaves_nothing_on_error(tmp_path, capsys):
    a = write(tmp_path / "a.json", mme(lam=0.1, val=0.7))
    b = write(tmp_path / "b.json", mme(lam=0.5, val=0.8))
    out = tmp_path / "sel" / "selected.json"
    assert main(["select-lambda", "--runs", str(a), str(b), "--output", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["selection"]["chosen_lambda"] == 0.5
    assert load_run(out).kind == "mme-selected"

    odd = write(tmp_path / "odd.json", mme(lam=1.0, split=1))
    out2 = tmp_path / "sel2" / "selected.json"
    assert main(["select-lambda", "--runs", str(a), str(odd), "--output", str(out2)]) == 2
    assert str(odd) in capsys.readouterr().err
    assert not out2.exists()


def test_first_split_reference_of_another_pair_is_rejected(tmp_path):
    reference = load_runs([write(tmp_path / "r.json", mme(split=0, target="ztf"))])
    current = load_runs([write(tmp_path / "c.json", mme(split=1))])
    with pytest.raises(InputFileError) as info:
        select_lambda(current, "first_split", reference)
    assert str(tmp_path / "r.json") in str(info.value)


def test_first_split_without_the_chosen_lambda_in_current_split(tmp_path):
    reference = load_runs([write(tmp_path / "r.json", mme(split=0, lam=0.5))])
    current = load_runs([write(tmp_path / "c.json", mme(split=1, lam=0.1))])
    with pytest.raises(SettingError, match="lambda 0.5"):
        select_lambda(current, "first_split", reference)


def test_ent_runs_are_selected_like_mme_and_methods_are_not_mixed(tmp_path):
    def ent(lam, val):
        return adapted_run("ent", "des", "hits", 0, 5, 0.9, 0.8, lam=lam, val_bacc=val)

    runs = load_runs([write(tmp_path / f"ent-{lam}.json", ent(lam, val)) for lam, val in ((0.1, 0.7), (0.5, 0.8))])
    selected = select_lambda(runs)
    assert selected["method"] == "ent" and selected["lambda"] == 0.5
    chosen = load_run(write(tmp_path / "ent-selected.json", selected))
    assert chosen.kind == "ent-selected" and chosen.key()[4] is None  # not a duplicate of the lambda-0.5 run
    load_runs([write(tmp_path / "ent-selected.json", selected), *[r.path for r in runs]])
    mixed = load_runs([runs[0].path, write(tmp_path / "mme.json", mme(lam=0.5))])
    with pytest.raises(InputFileError, match="runs of one lambda method"):
        select_lambda(mixed)
    with pytest.raises(InputFileError, match="only runs of mme, ent carry a 'selection'"):
        load_run(write(tmp_path / "st.json", {**adapted_run("st", "des", "hits", 0, 5, 0.9, 0.8),
                                              "selection": selected["selection"]}))
