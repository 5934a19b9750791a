"""The command-line front (medview/cli.py) and the one CLI error helper (commands/_common)."""

from __future__ import annotations

import pytest

from medview import cli
from medview.commands._common import error, print_json
from medview.errors import MedviewError


def test_a_missing_command_module_is_an_error_not_a_hidden_command(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "ghost", "no_such_command_module")
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser()
    rc = cli.main(["ghost"])
    err = capsys.readouterr().err
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "medview.commands.no_such_command_module" in lines[0]
    assert "Traceback" not in err


def test_every_listed_command_module_imports():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(cli.COMMANDS)


def test_error_helper_prints_one_line_naming_the_file(capsys):
    assert error("/data/x.dcm", "not a DICOM file\n(truncated)") == 2
    assert capsys.readouterr().err == "medview: /data/x.dcm: not a DICOM file (truncated)\n"
    assert error(MedviewError("bad card", "/m/metadata.json"), prog="medview analyze") == 2
    assert capsys.readouterr().err == "medview analyze: /m/metadata.json: bad card\n"
    assert error(ValueError("CUDA requested but not available"), status=1) == 1
    assert capsys.readouterr().err == "medview: CUDA requested but not available\n"
    assert error(KeyError()) == 2
    assert capsys.readouterr().err == "medview: KeyError\n"
    assert error("PATH is required") == 2
    assert capsys.readouterr().err == "medview: PATH is required\n"


def test_print_json_one_line_or_indented(capsys):
    print_json({"a": 1, "p": cli})
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith('{"a": 1, "p": "<module')
    print_json({"a": [1]}, indent=2)
    assert capsys.readouterr().out == '{\n  "a": [\n    1\n  ]\n}\n'


def test_self_test_lives_with_the_commands():
    import medview.commands.selftest as impl
    from medview import selftest
    from medview.selftest import SAMPLE_FILES  # what packaging/medview.spec imports

    assert selftest is impl and SAMPLE_FILES == impl.SAMPLE_FILES
    assert "CT_small.dcm" in SAMPLE_FILES


def test_closed_pipe_is_not_a_traceback(tmp_path):
    """`medview ... | head` closes stdout early: no BrokenPipeError traceback, exit 0."""
    import subprocess
    import sys

    script = (
        "import sys; from medview import cli\n"
        "from medview.commands import studies\n"
        "def run(args):\n"
        "    for _ in range(100000):\n"
        "        print('x' * 80)\n"
        "    return 0\n"
        "studies.run = run\n"
        "sys.exit(cli.main(['studies']))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err
    assert proc.returncode == 0
