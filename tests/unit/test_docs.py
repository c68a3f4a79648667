"""The README and docs/ say only what runs: every command in their fenced bash blocks parses with the parser of the
program it names (the stages' own parsers, DVC's, torchrun's), every `make` target and `python -m` module exists,
every python block compiles, every relative link resolves, and the README stays a screen's worth."""
from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
OPTIONAL = re.compile(r"\[(--[^\]]*)\]")  # `[--batch-size 64]`: a documented optional flag


def blocks(kind: str) -> list[tuple[Path, str]]:
    return [(page, body) for page in PAGES for lang, body in FENCE.findall(page.read_text(encoding="utf-8"))
            if lang == kind]


def split_commands(line: str) -> list[tuple[list[str], list[str]]]:
    """(words, flags of its [--optional] groups) of each command on one shell line: chains (&&, ||, ;, |) split,
    redirections dropped."""
    optional = [flag for group in OPTIONAL.findall(line) for flag in re.findall(r"--[\w-]+", group)]
    line = re.sub(r"\$\([^)]*\)|<[\w-]+>", "PLACEHOLDER", OPTIONAL.sub(" ", line))  # $(git ...), <name>
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out, words, tokens = [], [], iter(lexer)
    for token in tokens:
        if token in ("&&", "||", ";", "|", "&"):
            out.append(words)
            words = []
        elif token in (">", ">>", "<"):
            next(tokens, None)
        else:
            words.append(token)
    out.append(words)
    return [(w, optional if any(x.startswith("stages.") for x in w) else []) for w in out if w]


def commands() -> list[tuple[str, list[str], list[str]]]:
    """(page, words, optional flags) for every command of every bash block (continuations joined, comments
    dropped)."""
    out = []
    for page, body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            out += [(page.relative_to(REPO_ROOT).as_posix(), *command) for command in split_commands(line)]
    return out


def check_stage(module: str, args: list[str], optional: list[str]) -> None:
    parser = importlib.import_module(module).parser()
    known = {flag for action in parser._actions for flag in action.option_strings}
    assert set(optional) <= known, f"{module} has no {sorted(set(optional) - known)}"
    parser.parse_args(args)  # exits (SystemExit) on an unknown flag or a missing required one


def check(words: list[str], optional: list[str] = ()) -> None:
    program = words[0]
    if program == "make":
        targets = set(re.findall(r"^([\w-]+):", (REPO_ROOT / "Makefile").read_text(encoding="utf-8"), re.M))
        assert set(words[1:]) <= targets, f"no make target {set(words[1:]) - targets}"
    elif program == "dvc":
        from dvc.cli import DvcParserError
        from dvc.cli.parser import get_main_parser

        try:
            get_main_parser().parse_args(words[1:])
        except DvcParserError:
            raise SystemExit(2) from None
    elif program in ("python", "python3") and words[1] == "-m":
        module = words[2]
        if module.startswith("stages."):
            check_stage(module, words[3:], optional)
        else:
            assert importlib.util.find_spec(module) is not None, f"no module {module}"
    elif program == "torchrun":
        from torch.distributed.run import get_args_parser

        at = words.index("-m")
        get_args_parser().parse_args([*words[1:at], "-m", words[at + 1]])
        check_stage(words[at + 1], words[at + 2:], optional)


@pytest.mark.parametrize("where,words,optional", commands())
def test_every_documented_command_parses(where, words, optional):
    try:
        check(words, optional)
    except SystemExit as e:
        pytest.fail(f"{where}: `{shlex.join(words)}` does not parse (exit {e.code})")


def test_the_checks_catch_a_wrong_flag_and_a_missing_target():
    def parse(line: str) -> None:
        for words, optional in split_commands(line):
            check(words, optional)

    parse("python -m stages.score --input a.jsonl --output b.jsonl [--batch-size 64] [--device auto|cpu] | tail")
    with pytest.raises(SystemExit):
        parse("python -m stages.train --data data/train.jsonl --model models/reward_model")
    with pytest.raises(SystemExit):
        parse("dvc repro && dvc exp runn -S train.lr=1e-5")
    with pytest.raises(AssertionError):
        parse("make demo-all")
    with pytest.raises(AssertionError):
        parse("python -m stages.score --input a.jsonl --output b.jsonl [--batch-size 64] [--temperature 2]")


def test_every_python_block_compiles():
    for page, body in blocks("python"):
        compile(body, str(page), "exec")


def test_every_relative_link_resolves_and_every_page_is_linked_from_the_readme():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not re.match(r"\w+://", target):
                assert (page.parent / target).exists(), f"{page.name} links to a missing {target}"
    assert all(f"(docs/{page.name})" in readme for page in PAGES[1:]), "a docs page the README does not link"


def test_the_readme_fits_on_a_screen_or_two():
    assert len((REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
