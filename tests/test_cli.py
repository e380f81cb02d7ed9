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
    assert len(err) == 1 and err[0].startswith("dfg split: error: unknown task 'no-such-task'")
