"""The `dfg` entry point: verb discovery, per-verb help, one-line errors."""

import pytest

from dfg.cli import find_verb, main


@pytest.mark.parametrize("argv, verb", [
    (["train", "t", "m", "--seed", "0"], "train"),
    (["--params", "p.yaml", "--suite", "tiny", "split", "x"], "split"),
    (["-v", "gpu-lease", "--", "echo", "train"], "gpu-lease"),
    (["--suite", "train"], None),  # "train" is the suite's value here, not a verb
    (["nosuch"], None),
    ([], None),
])
def test_find_verb(argv, verb):
    assert find_verb(argv) == verb


def test_verb_help_lists_the_verbs_own_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--backbones" in out and "--methods" in out


def test_user_error_is_one_line_and_exit_2(capsys):
    assert main(["split", "no-such-task", "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dfg split: error: argument TASK: unknown task 'no-such-task'")


def test_a_misspelt_name_gets_did_you_mean_and_the_known_names(capsys):
    assert main(["train", "fmnist-synt", "dfg", "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown task 'fmnist-synt'; did you mean 'fmnist-synth'" in err[0] and "see `dfg train --help`" in err[0]
    assert main(["bench", "--methods", "dfg,delt"]) == 2
    assert "unknown method 'delt'; did you mean 'delta'" in capsys.readouterr().err


def test_positional_help_lists_the_valid_names(capsys):
    with pytest.raises(SystemExit):
        main(["--suite", "tiny", "train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "digits-tiny, fmnist," in out  # the tiny suite's task, beside params.yaml's
    assert "balanced_softmax, cb_focal, crt, delta, dfg" in out
    with pytest.raises(SystemExit):
        main(["fetch", "--help"])
    assert "caltech256, cifar10, cinic10" in " ".join(capsys.readouterr().out.split())


def test_suite_before_or_after_the_verb(capsys):
    assert main(["--suite", "paper", "params", "train.steps"]) == 0
    assert main(["params", "train.steps", "--suite", "paper"]) == 0
    assert main(["params", "train.steps"]) == 0
    assert capsys.readouterr().out.split() == ["40000", "40000", "300"]


def test_version_and_top_level_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("dfg 0.")
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert out.count("\n  dfg ") >= 3  # three examples
    assert "plan" in out and "study" in out
