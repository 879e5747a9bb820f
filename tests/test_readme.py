"""The README stays true: its examples run, and its quick start is what CI runs."""

import io
import re
import shlex

import pytest
from corpus import ROOT

from proto_rewrite.cli import main

README = (ROOT / "README.md").read_text()


def console_examples() -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", README, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_has_examples_and_quick_start():
    assert console_examples()
    for name in ("run", "test"):
        assert re.search(rf"<!-- quickstart:{name} -->\n```sh\n.+\n```", README)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "quickstart run" in ci and "quickstart test" in ci


@pytest.mark.parametrize("example", console_examples())
def test_readme_example_runs(example, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = shlex.split(example)
    assert argv[0] == "proto-rewrite"
    out, err = io.StringIO(), io.StringIO()
    assert main(argv[1:], stdout=out, stderr=err) == 0, err.getvalue()
    assert out.getvalue()


def test_readme_lists_every_command():
    from proto_rewrite.cli.main import COMMANDS

    for command in COMMANDS:
        name = command.__name__.rsplit(".", 1)[-1].removesuffix("_cmd").replace("_", "-")
        assert f"`proto-rewrite {name}" in README


def shown_outputs() -> list[tuple[str, list[str]]]:
    """A console block followed by a text block: the command, and the lines its output must hold."""
    pairs = re.findall(r"```console\n([^`]*)```\n\n```text\n([^`]*)```", README)
    return [(command.strip(), [line for line in text.splitlines() if line.strip()]) for command, text in pairs]


@pytest.mark.parametrize("example", shown_outputs(), ids=lambda pair: pair[0] if isinstance(pair, tuple) else None)
def test_readme_shows_what_the_example_prints(example, monkeypatch):
    command, lines = example
    monkeypatch.chdir(ROOT)
    out, err = io.StringIO(), io.StringIO()
    assert main(shlex.split(command)[1:], stdout=out, stderr=err) == 0, err.getvalue()
    printed = out.getvalue().splitlines()
    for line in lines:
        assert line in printed, f"README shows {line!r}; {command} printed:\n{out.getvalue()}"
