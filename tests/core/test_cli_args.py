"""The options several commands share (medview/commands/_args.py) and the shared bad-input
exit (CommandError, need_paths, open_database)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from medview import cli
from medview.commands._common import CommandError, need_paths, open_database


def _parsers(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def _options(flag: str) -> list[tuple[str, argparse.Action]]:
    """Every (command, action) of option ``flag`` in the command line and the GUI's parser."""
    found = []
    every = [*_parsers(cli.build_parser(), "medview"), ("medview (gui)", cli.build_gui_parser())]
    for name, parser in every:
        for action in parser._actions:
            if flag in action.option_strings:
                found.append((name, action))
    return found


def test_shared_options_mean_the_same_in_every_command():
    json_opts = _options("--json")
    assert len(json_opts) >= 15
    for name, a in json_opts:
        assert isinstance(a, argparse._StoreTrueAction) and a.dest == "json", name
    for name, a in _options("--db"):
        assert a.metavar == "FILE" and a.dest == "db" and a.default is None, name
    for name, a in _options("--series"):
        assert a.metavar == "UID", name
    for name, a in _options("--records"):
        assert a.metavar == "PATH", name
    repeatable = [(n, a) for n, a in _options("--model") if isinstance(a, argparse._AppendAction)]
    assert {n for n, _ in repeatable} >= {"medview sr", "medview report", "medview analyze"}
    for name, a in repeatable:
        assert a.metavar == "NAME", name
    projections = _options("--projection")
    assert {n for n, _ in projections} == {"medview render", "medview (gui)"}
    for name, a in projections:
        assert list(a.choices) == ["mip", "minip", "avg"], name
    for name, a in _options("--slab"):
        assert a.type is float and a.metavar == "MM", name


def test_epilog_comes_from_the_command_module():
    parsers = dict(_parsers(cli.build_parser(), "medview"))
    from medview.commands import analyze, models

    assert parsers["medview analyze"].epilog == analyze.EPILOG
    assert parsers["medview models"].epilog == models.EPILOG
    assert parsers["medview info"].epilog is None


def test_command_error_is_one_line_with_the_commands_prog_and_status(monkeypatch, capsys):
    from medview.commands import studies

    def run(args: argparse.Namespace) -> int:
        raise CommandError(
            "/x/y.db: cannot open the study database\n(locked)", prog="medview studies"
        )

    monkeypatch.setattr(studies, "run", run)
    assert cli.main(["studies"]) == 2
    err = capsys.readouterr().err
    assert err == "medview studies: /x/y.db: cannot open the study database (locked)\n"


def test_need_paths_names_the_first_missing_path(tmp_path, capsys):
    (tmp_path / "a").write_text("x")
    need_paths(str(tmp_path / "a"))  # present: nothing raised
    with pytest.raises(CommandError) as exc:
        need_paths(str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"), prog="medview x")
    assert str(exc.value) == f"{tmp_path / 'b'}: no such file or folder"
    assert exc.value.report() == 2
    assert capsys.readouterr().err == f"medview x: {tmp_path / 'b'}: no such file or folder\n"


def test_unopenable_database_is_a_command_error_and_a_value_error(tmp_path):
    bad = tmp_path / "not.db"
    bad.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(CommandError, match="cannot open the study database") as exc:
        open_database(str(bad))
    assert isinstance(exc.value, ValueError) and exc.value.status == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["sr", "{missing}", "--out", "x.dcm"],
        ["report", "{missing}", "--out", "x.pdf"],
        ["export", "{missing}", "--out", "{tmp}/out"],
        ["similar", "{missing}"],
    ],
)
def test_missing_path_is_one_line_exit_2(argv, tmp_path, capsys):
    missing = str(tmp_path / "nope")
    args = [a.format(missing=missing, tmp=tmp_path) for a in argv]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"{missing}: no such file or folder\n") and err.count("\n") == 1
