"""Every parameter value reaches the job as one word of data, never as shell code.

`render` shell-quotes each value; a placeholder that the template itself puts inside
quotes (or after a `$`, a backslash, inside `${...}`, a comment, a here-document, ...)
would flip that quoting, so `validate` refuses it with its line, column and the fix.
Checked three ways: a table of cases, bash itself on generated templates, and a real
campaign on the local backend.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.cli import main
from campaigns.core.expand import CommandTemplate
from campaigns.core.quoting import misquoted
from test_cli_local import monitor_until_done

#: Values that must arrive unchanged: code, quotes, globs, braces, a user name, newlines.
HOSTILE = [
    "$(touch pwned-dollar)",
    "`touch pwned-backquote`",
    "a; touch pwned-semicolon",
    "/data/ic 0007.h5",
    'it\'s "quoted" \\ $HOME ~ * {p,q}',
    "p,q",
    "root",
    "line one\nline two; touch pwned-newline",
    "",
]

REFUSED = {
    'run "{x}"': ("double quotes", 1, 6),
    "run '{x}'": ("single quotes", 1, 6),
    "run $'{x}'": ("$'...'", 1, 7),
    'run --label="{x}"': ("double quotes", 1, 14),
    'run "$(echo {x})"': ("double quotes", 1, 13),  # bash re-quotes here, but no rule to learn
    'run $(echo "{x}")': ("double quotes", 1, 13),
    "run $(echo '{x}')": ("single quotes", 1, 13),
    "run \"$(echo '{x}')\"": ("single quotes", 1, 14),
    'run "a\\"{x}"': ("double quotes", 1, 9),  # an escaped quote does not close them
    "run `echo {x}`": ("backquotes", 1, 11),
    "run ${{v:-{x}}}": ("${...}", 1, 11),
    "run $(({x} + 1))": ("arithmetic", 1, 8),
    "run \\{x}": ("backslash", 1, 6),
    "run ${x}": ("after $", 1, 6),
    "run ~{x}": ("after ~", 1, 6),
    "run {{a,{x}}}": ("brace expansion", 1, 9),
    "run a # {x}": ("comment", 1, 9),
    "cat <<EOF > in.txt\nseed {x}\nEOF\nrun in.txt": ("here-document", 2, 6),
    "prepare\nrun --in '{output}'": ("single quotes", 2, 11),
    'run {x} "{job_key}"': ("double quotes", 1, 10),
}

ALLOWED = [
    "run {x}",
    "run --label={x} pre{x}post {x}{x}",
    "run $(echo {x}) <(cat {x}) ( run {x} )",
    "run \"a b\" 'c d' $'e\\'f' \"$(date)\" {x}",
    'run "a\\\\" {x}',  # the backslash is escaped: the quotes closed before {x}
    "run 'a\\' {x}",  # no escapes inside single quotes
    'run $"hi"{x} $(a){x} a#{x}',
    "cat <<EOF > in.txt\nseed 1\nEOF\nrun in.txt {x}",
    "cat <<-'EOF'\n\tbody {{x}}\n\tEOF\nrun {x}",
    "run <<< {x}",
    "echo $((1 << 2)) {x}",
    "run \\\n  {x}",
    '{{ run {x}; }} && x=({x}) && echo "${{x[@]}}"',
    "run $(case a in a) echo {x};; esac)",
]


@pytest.mark.parametrize("template", list(REFUSED))
def test_a_placeholder_the_shell_would_not_unquote_is_found(template: str) -> None:
    words, line, column = REFUSED[template]
    found = misquoted(template)
    assert found is not None, template
    assert words in found.where and (found.line, found.column) == (line, column), found
    assert found.name in template and "{" in found.fix


@pytest.mark.parametrize("template", ALLOWED)
def test_a_placeholder_in_plain_command_text_is_allowed(template: str) -> None:
    assert misquoted(template) is None


@pytest.mark.parametrize(
    "template",
    [
        'run "{x}" \'{x}\' "a $(b {x})" `c {x}` ${{v:-{x}}} $(( {x} % 3 )) # {x}',
        "cat <<EOF\nseed {x}\nEOF",
    ],
)
def test_a_placeholder_with_only_plain_values_may_stand_where_text_is_literal(
    template: str,
) -> None:
    assert misquoted(template) is not None
    assert misquoted(template, inert={"x"}) is None
    assert misquoted(template, inert={"y"}) is not None


@pytest.mark.parametrize("template", ["run ${x}", "run ~{x}", "run \\{x}", "run {{a,{x}}}"])
def test_a_plain_value_is_still_refused_where_it_turns_into_something_else(
    template: str,
) -> None:
    assert misquoted(template, inert={"x"}) is not None


# -- bash decides ---------------------------------------------------------------------------

#: Word tokens without a placeholder: quoting the scanner must follow to stay in step.
LITERALS = [
    '"a\'b"',
    "'c\"d'",
    "$'e\\'f'",
    '"g\\"h"',
    "\\'",
    '\\"',
    "\"$(printf %s ')')\"",
    '$(printf %s "(")',
    "$((1+2))",
    '"${{u:-\'}}"',
    "`printf q`",
    "{{a,b}}",
    "x#y",
    '"#"',
    "'{{'",
    '$"loc"',
    "\\\\",
]
#: Word tokens with one.
PLACED = [
    "{x}",
    "pre{x}",
    "{x}post",
    '"{x}"',
    "'{x}'",
    "$'{x}'",
    '"$(printf %s {x})"',
    "a$(printf %s {x})",  # (alone, an empty output would drop the word: bash's rule)
    "`printf %s {x}`",
    "${{u:-{x}}}",
    "\\{x}",
    "${x}",
    "~{x}",
    "{{a,{x}}}",
    '"a{x}b"',
]
#: Whole lines.
LINES = [
    "cat <<EOF\n{x}\nEOF",
    "cat <<'EOF'\nbody ' \" \nEOF",
    "printf '<%s>' # {x}",
    "printf '<%s>' # it's",
]


@st.composite
def templates(draw: st.DrawFn) -> str:
    """A few lines of printf over word tokens, here-documents and comments."""
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 4)) == 0:
            lines.append(draw(st.sampled_from(LINES)))
            continue
        words = draw(st.lists(st.sampled_from(LITERALS + PLACED), min_size=1, max_size=5))
        lines.append("printf '<%s>' " + " ".join(words))
    return "set -f; IFS=\n" + "\n".join(lines) + "\n"


def bash(command: str, cwd: Path) -> str:
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent-home"},
    )
    return done.stdout + "|" + str(done.returncode)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(template=templates())
def test_bash_reads_every_allowed_placeholder_as_one_word_of_data(
    template: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Where the scanner allows a template, bash's output with a hostile value is exactly
    its output with a harmless word, that word replaced by the value; nothing runs."""
    rendered = CommandTemplate.parse(template)
    if misquoted(template) is not None:
        return  # refused at validate: never run
    cwd = tmp_path_factory.mktemp("bash")
    expected = bash(rendered.render({"x": "SAFEWORD"}), cwd)
    for value in HOSTILE:
        got = bash(rendered.render({"x": value}), cwd)
        assert got == expected.replace("SAFEWORD", value), (template, value)
    assert not list(cwd.iterdir()), f"a value ran as a command: {list(cwd.iterdir())}"


#: Values of a parameter the scanner may call inert (every value known and plain).
PLAIN = ["7", "-3", "1.5e-05", "a_b.c+d-e/f"]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(template=templates())
def test_bash_reads_an_allowed_plain_value_unchanged_in_quotes_too(
    template: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same check, for a placeholder whose values are all plain: allowed in quotes,
    here-documents and comments as well, and still read exactly as written."""
    rendered = CommandTemplate.parse(template)
    if misquoted(template, inert={"x"}) is not None:
        return
    cwd = tmp_path_factory.mktemp("bash")
    expected = bash(rendered.render({"x": "SAFEWORD"}), cwd)
    for value in PLAIN:
        got = bash(rendered.render({"x": value}), cwd)
        assert got == expected.replace("SAFEWORD", value), (template, value)
    assert not list(cwd.iterdir())


def test_bash_turns_a_quoted_placeholder_into_code(tmp_path: Path) -> None:
    """Why the refusal matters: rendered inside "...", a value runs, another gets quotes."""
    template = CommandTemplate.parse('printf "<%s>" "{x}"')
    assert bash(template.render({"x": "$(touch pwned)"}), tmp_path) == "<''>|0"
    assert (tmp_path / "pwned").exists()
    assert bash(template.render({"x": "ic 0007.h5"}), tmp_path) == "<'ic 0007.h5'>|0"


# -- a campaign ------------------------------------------------------------------------------

ECHO_ARGV = "{python} -c 'import json, sys; print(json.dumps(sys.argv[1:]))'"


def write_campaign(folder: Path, command: str) -> Path:
    values = "\n".join(f"    - {json.dumps(v)}" for v in HOSTILE)
    path = folder / "quoting.yaml"
    path.write_text(
        'campaign: {name: "Quoting", version: "q1", machine: local}\n'
        f"parameters:\n  n: [0]\n  label:\n{values}\n"
        f"job:\n  command: {json.dumps(command)}\n"
        '  output: "out_{job_key}.json"\n'
        "execution: {batch_size: 20, max_retries: 0}\n"
    )
    return path


def test_numbers_may_be_quoted_or_computed_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_campaign(tmp_path, 'run "{n}" $(( {n} % 3 )) "{attempt}" --label {label}')
    assert main(["validate", str(config)]) == 0, capsys.readouterr().err
    config = write_campaign(tmp_path, 'run "{n}" "{label}"')
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "placeholder {label}" in err and "allowed only when every value" in err


@pytest.mark.parametrize(
    "command",
    [
        'run --label "{label}" > {output}',
        "run --label '{label}' > {output}",
        'run --label "$(echo {label})" > {output}',
    ],
)
def test_validate_refuses_a_quoted_placeholder_with_its_place_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    config = write_campaign(tmp_path, command)
    for verb in ("validate", "init"):
        assert main([verb, str(config), "--root", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err
        assert f"error: {config}, line " in err and "key 'job.command'" in err, err
        assert "placeholder {label}" in err and "column " in err and "quotes" in err, err
        assert "Fix: write {label} without the quotes around it." in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_hostile_values_arrive_as_one_argument_each_and_never_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    python = shlex.quote(sys.executable)
    command = ECHO_ARGV.format(python=python) + " --label {label} --n {n} > {output}"
    config = write_campaign(tmp_path, command)
    args = [str(config), "--root", str(tmp_path / "runs")]
    assert main(["validate", *args]) == 0
    assert main(["init", *args]) == 0
    assert main(["submit", *args, "--backend", "local"]) == 0
    capsys.readouterr()
    report = monitor_until_done(config, tmp_path / "runs", capsys)
    assert report["counts"]["completed"] == len(HOSTILE), report
    catalogs = tmp_path / "runs" / "q1_quoting" / "catalogs"
    seen = sorted(json.loads(p.read_text()) for p in catalogs.glob("out_*.json"))
    assert seen == sorted(["--label", value, "--n", "0"] for value in HOSTILE)
    ran = [p for p in tmp_path.rglob("pwned*")]
    assert not ran, f"a value ran as a command: {ran}"
