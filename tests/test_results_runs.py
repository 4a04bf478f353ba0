"""Run JSON validation and lambda selection (rbda choose-lambda, rbda select-lambda)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from results_helpers import adapted_run, baseline_run, write

from rbda.cli import main
from rbda.errors import InputFileError, SettingError
from rbda.results.runs import load_run, load_runs, read_runs_list
from rbda.results.selection import choose_lambda, select_lambda


def mme(split=0, lam=0.1, val=0.9, shots=5, source="des", target="hits"):
    return adapted_run("mme", source, target, split, shots, 0.9, 0.8, lam=lam, val_bacc=val)


def test_valid_run_loads(tmp_path):
    run = load_run(write(tmp_path / "b.json", baseline_run("des", 0, {"des": 0.9, "hits": 0.7})))
    assert (run.kind, run.source, run.split) == ("baseline", "des", 0)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("evaluations"), "'evaluations' is a required property"),
    (lambda d: d.update(schema="rbda.run/2"), "schema"),
    (lambda d: d.update(method="adamatch"), "method"),
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


@pytest.mark.parametrize("metrics, message", [
    ({"roc_auc": "high"}, "roc_auc"),
    ({"purity": 1.5}, "purity"),
    ({"at_completeness": {"0.95": {"fpr": -0.1}}}, "fpr"),
    ({"at_completeness": {"0.95": "none"}}, "0.95"),
    ({"completeness": float("nan")}, "finite balanced accuracies and survey metrics"),
    ({"at_completeness": {"0.99": {"fpr": float("inf")}}}, "fpr"),
])
def test_malformed_survey_metrics_name_the_file_and_field(tmp_path, metrics, message):
    data = mme()
    data["evaluations"][1]["survey_metrics"] = metrics
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(data))  # json writes NaN and Infinity, which json.loads accepts
    with pytest.raises(InputFileError) as info:
        load_run(path)
    assert str(path) in str(info.value) and message in str(info.value)


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


def mme_with_history(split=0, lam=0.1, shots=5, history=(0.9,), best_epoch=None):
    """An MME run whose validation history is ``history`` (epochs 1, 2, ...)."""
    data = mme(split=split, lam=lam, shots=shots, val=max(history))
    best = best_epoch or (len(history) - history[::-1].index(max(history)))
    data["validation"].update(best_epoch=best, history=[
        {"epoch": i + 1, "val_bacc": v, "train_loss": 0.5} for i, v in enumerate(history)])
    return data


def test_per_split_picks_best_validation(tmp_path):
    runs = load_runs([write(tmp_path / f"{lam}.json", mme(lam=lam, val=val))
                      for lam, val in ((0.01, 0.80), (0.1, 0.92), (1.0, 0.90), (10.0, 0.5))])
    selected = select_lambda(runs, "per_split")
    assert selected["lambda"] == 0.1
    sel = selected["selection"]
    assert (sel["rule"], sel["chosen_lambda"], sel["tie"], sel["tie_broken_by"]) == ("per_split", 0.1, False, "none")
    assert [(c["lambda"], c["val_bacc"], c["n_runs"]) for c in sel["candidates"]] == [
        (0.01, 0.80, 1), (0.1, 0.92, 1), (1.0, 0.90, 1), (10.0, 0.5, 1)]
    assert "selection" not in runs[1].data  # the input run is not modified


def test_tie_broken_by_recent_epochs_then_by_the_smaller_lambda(tmp_path):
    # equal best BACC; lambda 1 was good for longer before its best epoch
    runs = load_runs([write(tmp_path / "a.json", mme_with_history(lam=0.1, history=(0.5, 0.6, 0.6, 0.9, 0.7))),
                      write(tmp_path / "b.json", mme_with_history(lam=1.0, history=(0.85, 0.85, 0.9, 0.9, 0.6)))])
    sel = select_lambda(runs, "per_split")["selection"]
    assert (sel["chosen_lambda"], sel["tie"], sel["tie_broken_by"]) == (1.0, True, "recent_epochs")
    # the other way round: the tie-breaker decides, not the lambda's size
    runs = load_runs([write(tmp_path / "c.json", mme_with_history(lam=0.1, history=(0.85, 0.85, 0.9))),
                      write(tmp_path / "d.json", mme_with_history(lam=1.0, history=(0.5, 0.5, 0.9)))])
    sel = select_lambda(runs, "per_split")["selection"]
    assert (sel["chosen_lambda"], sel["tie_broken_by"]) == (0.1, "recent_epochs")
    # identical curves: the smaller lambda
    runs = load_runs([write(tmp_path / "e.json", mme_with_history(lam=1.0, history=(0.8, 0.9))),
                      write(tmp_path / "f.json", mme_with_history(lam=0.1, history=(0.8, 0.9)))])
    sel = select_lambda(runs, "per_split")["selection"]
    assert (sel["chosen_lambda"], sel["tie"], sel["tie_broken_by"]) == (0.1, True, "smaller_lambda")


def test_recent_epochs_stop_at_the_best_epoch(tmp_path):
    from rbda.results.runs import load_run
    from rbda.results.selection import TIE_BREAK_EPOCHS, recent_val_bacc

    history = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 0.0, 0.0)
    run = load_run(write(tmp_path / "a.json", mme_with_history(history=history, best_epoch=7)))
    assert TIE_BREAK_EPOCHS == 5
    assert recent_val_bacc(run) == pytest.approx((0.3 + 0.4 + 0.5 + 0.6 + 0.9) / 5)


#: Every split's validation items avoid every split's test part (the selection logic alone).
ALL_CLEAN = {0: [0, 1], 1: [0, 1]}


def target_files(tmp_path, splits, n=200, seed=2023):
    """A small preprocessed hits survey and its split files, as ``rbda choose-lambda`` options."""
    from rbda.ingest.splits import make_split, save_split
    from rbda.ingest.store import STAMP_SHAPE, write_survey

    labels = np.tile(np.array([0, 1], np.int8), n // 2)
    data = tmp_path / "hits.parquet"
    write_survey(data, "hits", np.zeros((n, *STAMP_SHAPE), np.float32), labels,
                 np.where(labels == 1, "real", "bogus"), np.arange(n).astype(str))
    options = ["--target-data", str(data), "--target-split"]
    for k in splits:
        path = tmp_path / f"split-{k}.npz"
        save_split(path, make_split(labels, "hits", k, seed))
        options.append(f"{k}={path}")
    return options


def pair_runs(tmp_path, table, splits=(0, 1), shots=(1, 5)):
    """Write MME runs of des-to-hits; ``table[lam](shots, split)`` is the validation BACC."""
    paths = {}
    for lam, val in table.items():
        for n in shots:
            for k in splits:
                paths[(lam, n, k)] = write(tmp_path / f"l{lam}-s{n}-k{k}.json",
                                           mme(split=k, lam=lam, shots=n, val=val(n, k)))
    return paths


def test_per_pair_one_lambda_for_every_group_on_the_mean_over_shots_and_splits(tmp_path):
    # lambda 0.1 wins most groups by a little, lambda 1 wins one group by a lot: the mean decides
    table = {0.1: lambda n, k: 0.80, 1.0: lambda n, k: 0.95 if (n, k) == (5, 1) else 0.78}
    paths = pair_runs(tmp_path, table)
    choice = choose_lambda(load_runs(list(paths.values())), ALL_CLEAN, "per_pair")
    assert (choice["method"], choice["source"], choice["target"], choice["rule"]) == ("mme", "des", "hits", "per_pair")
    assert [facts["chosen_lambda"] for facts in choice["by_split"].values()] == [1.0, 1.0]
    chosen = set()
    for n in (1, 5):
        for k in (0, 1):
            current = load_runs([paths[(lam, n, k)] for lam in table])
            selected = select_lambda(current, "per_pair", choice)
            assert (selected["shots"], selected["split"]) == (n, k)
            chosen.add(selected["lambda"])
            sel = selected["selection"]
            assert sel["reference_shots"] == [1, 5] and sel["reference_splits"] == [0, 1]
            assert [c["n_runs"] for c in sel["candidates"]] == [4, 4]
    assert chosen == {1.0}  # mean 0.8225 vs 0.80
    # per_split would have chosen 0.1 in three of the four groups
    assert select_lambda(load_runs([paths[(lam, 1, 0)] for lam in table]), "per_split")["lambda"] == 0.1
    with pytest.raises(SettingError, match="the pair's lambda choice"):
        select_lambda(load_runs([paths[(lam, 1, 0)] for lam in table]), "per_pair")
    with pytest.raises(SettingError, match="no lambda choice with rule per_split"):
        select_lambda(load_runs([paths[(lam, 1, 0)] for lam in table]), "per_split", choice)
    with pytest.raises(SettingError, match="every run of the pair"):
        choose_lambda([], {}, "per_pair")
    with pytest.raises(SettingError, match="per_split chooses per group"):
        choose_lambda(load_runs(list(paths.values())), ALL_CLEAN, "per_split")
    with pytest.raises(SettingError, match="missing split"):
        choose_lambda(load_runs(list(paths.values())), {0: [0]}, "per_pair")


def test_per_pair_refuses_an_incomplete_reference(tmp_path):
    table = {0.1: lambda n, k: 0.80, 1.0: lambda n, k: 0.85}
    paths = pair_runs(tmp_path, table)
    incomplete = [p for key, p in paths.items() if key != (1.0, 5, 1)]
    with pytest.raises(SettingError, match="shots 5 split 1 lacks lambda"):
        choose_lambda(load_runs(incomplete), ALL_CLEAN, "per_pair")


def test_a_choice_is_used_only_for_its_own_method_pair_rule_and_runs(tmp_path):
    table = {0.1: lambda n, k: 0.80, 1.0: lambda n, k: 0.85}
    paths = pair_runs(tmp_path, table)
    choice = choose_lambda(load_runs(list(paths.values())), ALL_CLEAN, "per_pair")
    current = load_runs([paths[(lam, 1, 0)] for lam in table])
    facts = choice["by_split"]["0"]

    def split_0(**changed):
        return {**choice, "by_split": {**choice["by_split"], "0": {k: v for k, v in {**facts, **changed}.items()
                                                                   if v is not None}}}

    cases = [({**choice, "schema": "rbda.run/1"}, "per_pair", "schema"),
             ({**choice, "target": "ztf"}, "per_pair", "target 'hits'"),
             ({**choice, "method": "ent"}, "per_pair", "method 'mme'"),
             ({**choice, "rule": "first_split"}, "per_pair", "rule 'per_pair'"),
             ({**choice, "by_split": {"1": facts}}, "per_pair", "the choice of split 0"),
             (split_0(candidates=None), "per_pair", "'candidates'"),
             (split_0(reference_shots=[5]), "per_pair", "including shots 1"),
             (split_0(candidates=facts["candidates"][1:]), "per_pair", "among the lambdas of --runs"),
             (split_0(chosen_lambda=7.0), "per_pair", "one of its candidates"),
             ("not a dict", "per_pair", "schema")]
    for bad, rule, message in cases:
        with pytest.raises(InputFileError, match=message) as info:
            select_lambda(current, rule, bad, choice_path=str(tmp_path / "choice.json"))
        assert str(tmp_path / "choice.json") in str(info.value)


def test_first_split_one_lambda_per_pair_chosen_on_split_0_over_all_shots(tmp_path):
    # on split 0, lambda 0.1 is better on average over shots; on split 1 lambda 1 is better
    table = {0.1: lambda n, k: (0.95 if n == 1 else 0.80) if k == 0 else 0.70,
             1.0: lambda n, k: (0.85 if n == 1 else 0.82) if k == 0 else 0.99}
    paths = pair_runs(tmp_path, table)
    choice = choose_lambda(load_runs(list(paths.values())), ALL_CLEAN, "first_split")
    for n in (1, 5):
        current = load_runs([paths[(lam, n, 1)] for lam in table])
        selected = select_lambda(current, "first_split", choice)
        assert (selected["split"], selected["shots"], selected["lambda"]) == (1, n, 0.1)
        assert selected["selection"]["reference_splits"] == [0]
        assert [c["val_bacc"] for c in selected["selection"]["candidates"]] == [
            pytest.approx(0.875), pytest.approx(0.835)]
    with pytest.raises(SettingError, match="the pair's lambda choice"):
        select_lambda(current, "first_split", None)
    # split 0's validation items hold some of split 1's test items: split 1 is chosen on its own runs
    leaky = choose_lambda(load_runs(list(paths.values())), {0: [0, 1], 1: [1]}, "first_split")
    assert leaky["by_split"]["1"]["chosen_lambda"] == 1.0 and leaky["by_split"]["1"]["reference_splits"] == [1]
    assert leaky["by_split"]["0"]["reference_splits"] == [0]


def test_selection_rejects_a_run_of_another_identity(tmp_path):
    good = write(tmp_path / "good.json", mme(lam=0.1))
    odd = write(tmp_path / "odd.json", mme(lam=1.0, shots=20))
    with pytest.raises(InputFileError) as info:
        select_lambda(load_runs([good, odd]), "per_split")
    assert str(odd) in str(info.value) and "shots=20" in str(info.value)
    ft = write(tmp_path / "ft.json", adapted_run("finetune", "des", "hits", 0, 5, 0.9, 0.8))
    with pytest.raises(InputFileError, match="got a finetune run"):
        select_lambda(load_runs([good, ft]), "per_split")


def test_cli_writes_selected_run_and_leaves_nothing_on_error(tmp_path, capsys):
    a = write(tmp_path / "a.json", mme(lam=0.1, val=0.7))
    b = write(tmp_path / "b.json", mme(lam=0.5, val=0.8))
    out = tmp_path / "sel" / "selected.json"
    assert main(["select-lambda", "--runs", str(a), str(b), "--rule", "per_split", "--output", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["selection"]["chosen_lambda"] == 0.5
    assert load_run(out).kind == "mme-selected"

    odd = write(tmp_path / "odd.json", mme(lam=1.0, split=1))
    out2 = tmp_path / "sel2" / "selected.json"
    assert main(["select-lambda", "--runs", str(a), str(odd), "--rule", "per_split", "--output", str(out2)]) == 2
    assert str(odd) in capsys.readouterr().err
    assert not out2.exists()


def test_reference_runs_of_two_pairs_are_rejected_naming_the_file(tmp_path):
    one = write(tmp_path / "r1.json", mme(split=0))
    other = write(tmp_path / "r2.json", mme(split=0, target="ztf", lam=1.0))
    with pytest.raises(InputFileError) as info:
        choose_lambda(load_runs([one, other]), {0: [0]}, "first_split")
    assert str(other) in str(info.value)


def test_first_split_without_the_chosen_lambda_in_current_split(tmp_path):
    choice = choose_lambda(load_runs([write(tmp_path / "r.json", mme(split=0, lam=0.5))]), {0: [0]}, "first_split")
    current = load_runs([write(tmp_path / "c.json", mme(split=0, lam=0.1))])
    with pytest.raises(InputFileError, match=r"among the lambdas of --runs \(0.1\); it chose among 0.5"):
        select_lambda(current, "first_split", choice)


def test_cli_chooses_once_per_pair_then_selects_and_leaves_nothing_on_error(tmp_path, capsys):
    table = {0.1: lambda n, k: 0.80, 1.0: lambda n, k: 0.95 if (n, k) == (5, 1) else 0.78}
    paths = pair_runs(tmp_path, table)
    choice = tmp_path / "choices" / "des-to-hits.json"
    target = target_files(tmp_path, splits=(0, 1))
    assert main(["choose-lambda", "--runs", *map(str, paths.values()), *target, "--output", str(choice)]) == 0
    by_split = json.loads(choice.read_text())["by_split"]
    assert set(by_split) == {"0", "1"} and all(int(k) in facts["reference_splits"] for k, facts in by_split.items())
    out = tmp_path / "sel" / "selected.json"
    runs = [str(paths[(lam, 1, 0)]) for lam in table]
    assert main(["select-lambda", "--runs", *runs, "--choice", str(choice), "--output", str(out)]) == 0
    assert json.loads(out.read_text())["lambda"] == by_split["0"]["chosen_lambda"]
    assert load_run(out).kind == "mme-selected"

    out2 = tmp_path / "sel2" / "selected.json"
    assert main(["select-lambda", "--runs", *runs, "--choice", str(runs[0]), "--output", str(out2)]) == 2
    assert f"{runs[0]}: a lambda choice (schema rbda.lambda-choice/2" in capsys.readouterr().err
    assert not out2.exists()
    bad_choice = tmp_path / "choices" / "bad.json"
    assert main(["choose-lambda", "--runs", *runs[:1], str(paths[(1.0, 5, 1)]), *target,
                 "--output", str(bad_choice)]) == 2
    assert "lacks lambda" in capsys.readouterr().err
    assert not bad_choice.exists()


def test_ent_runs_are_selected_like_mme_and_methods_are_not_mixed(tmp_path):
    def ent(lam, val):
        return adapted_run("ent", "des", "hits", 0, 5, 0.9, 0.8, lam=lam, val_bacc=val)

    runs = load_runs([write(tmp_path / f"ent-{lam}.json", ent(lam, val)) for lam, val in ((0.1, 0.7), (0.5, 0.8))])
    selected = select_lambda(runs, "per_split")
    assert selected["method"] == "ent" and selected["lambda"] == 0.5
    chosen = load_run(write(tmp_path / "ent-selected.json", selected))
    assert chosen.kind == "ent-selected" and chosen.key()[4] is None  # not a duplicate of the lambda-0.5 run
    load_runs([write(tmp_path / "ent-selected.json", selected), *[r.path for r in runs]])
    mixed = load_runs([runs[0].path, write(tmp_path / "mme.json", mme(lam=0.5))])
    with pytest.raises(InputFileError, match="runs of one lambda method"):
        select_lambda(mixed)
    from rbda.registry import LAMBDA_METHODS

    with pytest.raises(InputFileError, match=f"only runs of {', '.join(LAMBDA_METHODS)} carry a 'selection'"):
        load_run(write(tmp_path / "st.json", {**adapted_run("st", "des", "hits", 0, 5, 0.9, 0.8),
                                              "selection": selected["selection"]}))


def test_per_pair_choice_never_sees_its_splits_test_items(tmp_path):
    """The selection-leak proof, from split files written by ``rbda split``: with 10 splits of one pool,
    a plain pool over every split's validation items would put items of split k's test part into the
    choice of split k's lambda (the old per_pair); ``rbda choose-lambda`` chooses split k's lambda only
    on runs whose validation items avoid split k's test part."""
    from rbda.ingest.splits import load_split
    from rbda.ingest.store import STAMP_SHAPE, read_labels_and_classes, write_survey
    from rbda.results.selection import target_validation_items

    n, splits, seed = 400, range(10), 2023
    labels = np.tile(np.array([0, 1], np.int8), n // 2)
    data = tmp_path / "hits.parquet"
    write_survey(data, "hits", np.zeros((n, *STAMP_SHAPE), np.float32), labels,
                 np.where(labels == 1, "real", "bogus"), np.arange(n).astype(str))
    files = {}
    for k in splits:
        files[k] = tmp_path / f"split-{k}.npz"
        assert main(["split", "--data", str(data), "--survey", "hits", "--split", str(k), "--seed", str(seed),
                     "--output", str(files[k])]) == 0
    table = {0.1: lambda n_, k: 0.80 + 0.01 * (k % 3), 1.0: lambda n_, k: 0.82 - 0.01 * (k % 2)}
    paths = {}
    for lam, val in table.items():
        for k in splits:
            run = mme(split=k, lam=lam, shots=5, val=val(5, k))
            run["seed"] = seed
            paths[lam, k] = write(tmp_path / "runs" / f"l{lam}-k{k}.json", run)
    choice_path = tmp_path / "choice.json"
    assert main(["choose-lambda", "--runs", *map(str, paths.values()), "--target-data", str(data),
                 "--target-split", *(f"{k}={files[k]}" for k in splits), "--output", str(choice_path)]) == 0
    choice = json.loads(choice_path.read_text())

    stored_labels, _ = read_labels_and_classes(data)
    split_files = {k: load_split(files[k]) for k in splits}
    items = target_validation_items(stored_labels, split_files, 10, seed, "hits")
    leaks = 0
    for k in splits:
        test = split_files[k].test
        reference = choice["by_split"][str(k)]["reference_splits"]
        assert k in reference
        for j in reference:  # nothing the choice of split k read was validated on split k's test items
            assert not np.intersect1d(items[j], test).size
        leaks += sum(bool(np.intersect1d(items[j], test).size) for j in splits)
        # its candidates are the means over exactly those splits' runs
        assert [c["n_runs"] for c in choice["by_split"][str(k)]["candidates"]] == [len(reference)] * 2
    assert leaks > 0  # the pool over every split (the old rule) did see test items
