"""Where each placeholder of `job.command` stands for the shell (bash). Pure.

`CommandTemplate.render` shell-quotes every value (`shlex.quote`). That keeps a value one
word of data only where bash reads those quotes: in the plain text of a command, also
inside `$(...)`, `<(...)` or `(...)`. Anywhere else the quoting flips: inside "..." the
added quotes arrive as literal characters (`/data/ic 0007.h5` becomes `'/data/ic 0007.h5'`)
and a value `$(touch x)` runs; inside '...' or $'...' the value closes the quotes; after
a backslash, a `$` or a `~`, inside `${...}`, `$((...))`, backquotes, a brace expansion,
a comment or a here-document bash reads the value as something else again.

`misquoted(template)` scans the template as bash would and returns the first placeholder
that stands in any such place, with its line and column, so `validate` refuses the
campaign before a job runs. It errs on the safe side: a placeholder inside quotes is
refused even where bash would re-quote it (inside "$(...)"): no rule to remember.

One exception keeps numeric templates working: a placeholder whose every value is known
and plain (INERT: letters, digits, `_ . + - /`, as integers always are) renders the same
with or without quoting, and reads the same inside quotes, `$((...))` or a here-document,
so `"{seed}"` or `$(( {i} % 3 ))` are allowed for such parameters (and `{attempt}`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

#: Characters that end an unquoted word.
_BREAKS = frozenset(" \t\n;&|()<>")
#: Frames a placeholder may stand in: plain command text, and command substitutions.
_COMMAND = ("command", "substitution")
#: What each other frame is, for the message, and how to fix a placeholder in it.
_FRAMES = {
    "dq": ('inside double quotes ("...")', "write {name} without the quotes around it"),
    "sq": ("inside single quotes ('...')", "write {name} without the quotes around it"),
    "ansi": ("inside $'...' quotes", "write {name} without the quotes around it"),
    "bq": (
        "inside backquotes (`...`)",
        "write $(...) instead of backquotes, with {name} unquoted inside",
    ),
    "param": (
        "inside a ${...} expansion",
        "set a variable first (v={name}; ... ${{v...}}) and expand that",
    ),
    "arith": (
        "inside arithmetic ($((...)) or $[...])",
        "set a variable first (n={name}; ... $((n + 1))) and use that",
    ),
}


@dataclass(frozen=True)
class Misquoted:
    """A placeholder that `render`'s quoting cannot keep one word of data."""

    name: str
    line: int  # within the command, from 1
    column: int  # from 1
    where: str  # "inside double quotes (\"...\")"
    fix: str  # what to write instead
    excerpt: str  # the command's line that holds it
    literal: bool = False  # a place where an INERT value would read the same

    def describe(self) -> str:
        """One sentence: which placeholder, where in the command, and why it is refused."""
        place = (
            f"line {self.line}, column {self.column}"
            if self.line > 1
            else (f"column {self.column}")
        )
        return (
            f"placeholder {{{self.name}}} in job.command ({place}: `{self.excerpt.strip()}`) "
            f"stands {self.where}, where the shell does not read the quotes campaigns puts "
            "around every value: a value with a space or a quote would arrive changed, and "
            "one like $(...) could run as a command"
        )


@dataclass
class _Frame:
    kind: str  # command, substitution, dq, sq, ansi, bq, param, arith, bracket
    depth: int = 0  # open ( in a substitution or arithmetic, { in a ${...}, [ in $[...]
    brace: int = 0  # open { of a brace expansion in the current word (command frames)
    word_start: bool = True  # command frames: the next character starts a word
    prev: str = ""  # the previous character of this frame ("" after a placeholder)


@dataclass
class _Heredoc:
    pending: list[tuple[str, bool]] = field(default_factory=list)  # (delimiter, strip tabs)
    line: list[str] = field(default_factory=list)  # the body line read so far
    inside: bool = False  # reading a body


def _pieces(template: str) -> Iterator[tuple[int, str, str | None]]:
    """(position, literal character, None) or (position, "", placeholder name), in order."""
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c in "{}" and template.startswith(c * 2, i):
            yield i, c, None
            i += 2
        elif c == "{":
            depth, j = 0, i
            while j < n:
                depth += {"{": 1, "}": -1}.get(template[j], 0)
                if depth == 0:
                    break
                j += 1
            body = template[i + 1 : j]
            yield i, "", body.split(":", 1)[0].split("!", 1)[0]
            i = j + 1
        else:
            yield i, c, None
            i += 1


#: A value made of these characters only reads the same inside quotes, ${...}, $((...)),
#: backquotes, a here-document or a comment: none of them is special in any of those.
INERT = re.compile(r"^[A-Za-z0-9_.+\-/]+$")


def misquoted(template: str, inert: Collection[str] = ()) -> Misquoted | None:
    """The first placeholder of `template` whose value bash would not read as one quoted
    word of data, or None when every placeholder stands in plain command text.

    Placeholders named in `inert` render only INERT text (every value of theirs is known,
    e.g. integers): those may also stand where bash reads the text literally (inside
    quotes, `$((...))`, a here-document); never right after `$`, `~` or a backslash, nor
    in a brace expansion, where even a plain word turns into something else."""
    return _Scanner(template, frozenset(inert)).run()


class _Scanner:
    """bash's quoting, as far as placeholders care (one pass, a stack of frames)."""

    def __init__(self, template: str, inert: frozenset[str]) -> None:
        self.template = template
        self.inert = inert
        self.pieces = list(_pieces(template))
        self.stack = [_Frame("command")]
        self.escaped = False
        self.comment = False
        self.heredoc = _Heredoc()
        self.k = 0

    def run(self) -> Misquoted | None:
        while self.k < len(self.pieces):
            pos, c, name = self.pieces[self.k]
            self.k += 1
            if name is not None:
                found = self._placeholder(pos, name)
                if found is not None:
                    return found
            else:
                self._char(c)
        return None

    # -- looking ahead ---------------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> str | None:
        """The literal character `ahead` places on (None: a placeholder or the end)."""
        k = self.k + ahead
        if k >= len(self.pieces) or self.pieces[k][2] is not None:
            return None
        return self.pieces[k][1]

    def _take(self, count: int = 1) -> None:
        self.k += count

    # -- placeholders ----------------------------------------------------------------------

    def _placeholder(self, pos: int, name: str) -> Misquoted | None:
        frame = self.stack[-1]
        problem = self._problem(frame)
        frame.prev = ""
        frame.word_start = False
        self.escaped = False
        if problem is None:
            return None
        where, fix, literal = problem
        if literal and name in self.inert:
            return None
        start = self.template.rfind("\n", 0, pos) + 1
        end = self.template.find("\n", pos)
        return Misquoted(
            name=name,
            line=self.template.count("\n", 0, pos) + 1,
            column=pos - start + 1,
            where=where,
            fix=fix.format(name="{" + name + "}"),
            excerpt=self.template[start : end if end >= 0 else len(self.template)],
            literal=literal,
        )

    def _problem(self, frame: _Frame) -> tuple[str, str, bool] | None:
        """(where, fix, whether an INERT value reads the same there) of a placeholder here."""
        if self.heredoc.inside:
            return (
                "inside a here-document (<<)",
                "pass {name} as an argument, or feed it through a here-string (<<< {name})",
                True,
            )
        if self.comment:
            return "inside a comment (#)", "take {name} out of the comment", True
        for outer in reversed(self.stack):
            if outer.kind not in _COMMAND:
                return (*_FRAMES[outer.kind], True)
        if self.escaped:
            return "right after a backslash", "remove the backslash before {name}", False
        if frame.prev == "$":
            return (
                "right after $ (the shell reads a variable there)",
                "write {name} without the $ (a shell variable is written $${{NAME}})",
                False,
            )
        if frame.prev == "~":
            return (
                "right after ~ (the shell reads a user name there)",
                "write the home directory out, or put a / between ~ and {name}",
                False,
            )
        if frame.brace:
            return (
                "inside a brace expansion ({a,b})",
                "write the alternatives out, without braces around {name}",
                False,
            )
        return None

    # -- characters ------------------------------------------------------------------------

    def _char(self, c: str) -> None:
        if self.heredoc.inside:
            self._heredoc_char(c)
            return
        frame = self.stack[-1]
        if self.escaped:  # the escaped character is plain text
            self.escaped = False
            frame.prev = "\\" + c
            frame.word_start = False
            return
        depth = len(self.stack)
        self._dispatch(frame, c)
        # After a frame `c` opened closes, the parent's last character is that frame: neutral.
        frame.prev = c if len(self.stack) <= depth else ""

    def _dispatch(self, frame: _Frame, c: str) -> None:
        if frame.kind in _COMMAND:
            self._command_char(frame, c)
        elif frame.kind == "dq":
            self._dq_char(frame, c)
        elif frame.kind == "sq":
            if c == "'":
                self.stack.pop()
        elif frame.kind in ("ansi", "bq"):
            if c == "\\":
                self.escaped = True
            elif c == ("'" if frame.kind == "ansi" else "`"):
                self.stack.pop()
        elif frame.kind == "param":
            self._param_char(frame, c)
        else:
            self._arith_char(frame, c)

    def _command_char(self, frame: _Frame, c: str) -> None:
        if self.comment:
            if c == "\n":
                self.comment = False
                self._newline(frame)
            return
        starts_word = frame.word_start
        frame.word_start = False
        if c == "\\":
            self.escaped = True
        elif c == "'":
            self.stack.append(_Frame("ansi" if frame.prev == "$" else "sq"))
        elif c == '"':
            self.stack.append(_Frame("dq"))
        elif c == "`":
            self.stack.append(_Frame("bq"))
        elif c == "$":
            self._dollar()
        elif c == "#" and starts_word:
            self.comment = True
        elif c == "{":
            follower = self._peek()  # None: a placeholder follows (or the end)
            if follower is None or follower not in " \t\n":
                frame.brace += 1
        elif c == "}" and frame.brace:
            frame.brace -= 1
        elif c == "<" and self._peek() == "<" and self._peek(1) != "<":
            self._take()
            self._here_operator()
            frame.brace, frame.word_start = 0, True
        elif c == "<" and self._peek() == "<":  # a here-string, <<<: plain words follow
            self._take(2)
            frame.brace, frame.word_start = 0, True
        elif c in _BREAKS:
            frame.brace, frame.word_start = 0, True
            if c == "(" and frame.kind == "substitution":
                frame.depth += 1
            elif c == ")" and frame.kind == "substitution":
                if frame.depth:
                    frame.depth -= 1
                else:
                    self.stack.pop()
            elif c in "<>" and self._peek() == "(":  # process substitution
                self._take()
                self.stack.append(_Frame("substitution"))
            elif c == "\n":
                self._newline(frame)

    def _dq_char(self, frame: _Frame, c: str) -> None:
        if c == "\\":
            self.escaped = True
        elif c == '"':
            self.stack.pop()
        elif c == "`":
            self.stack.append(_Frame("bq"))
        elif c == "$":
            self._dollar()

    def _param_char(self, frame: _Frame, c: str) -> None:
        if c == "\\":
            self.escaped = True
        elif c == "{":
            frame.depth += 1
        elif c == "}":
            if frame.depth:
                frame.depth -= 1
            else:
                self.stack.pop()
        elif c == '"':
            self.stack.append(_Frame("dq"))
        elif c == "'" and not any(f.kind == "dq" for f in self.stack):
            self.stack.append(_Frame("sq"))  # inside "${...}" bash keeps ' as a character
        elif c == "`":
            self.stack.append(_Frame("bq"))
        elif c == "$":
            self._dollar()

    def _arith_char(self, frame: _Frame, c: str) -> None:
        opener, closer = ("[", "]") if frame.kind == "bracket" else ("(", ")")
        if c == "\\":
            self.escaped = True
        elif c == opener:
            frame.depth += 1
        elif c == closer:
            if frame.depth:
                frame.depth -= 1
            else:
                if frame.kind == "arith" and self._peek() == ")":
                    self._take()
                self.stack.pop()
        elif c == '"':
            self.stack.append(_Frame("dq"))
        elif c == "`":
            self.stack.append(_Frame("bq"))
        elif c == "$":
            self._dollar()

    def _dollar(self) -> None:
        """`$(`, `$((`, `${`, `$[` open a frame here; `$'` is seen by the next character."""
        follower = self._peek()
        if follower == "(" and self._peek(1) == "(":
            self._take(2)
            self.stack.append(_Frame("arith"))
        elif follower == "(":
            self._take()
            self.stack.append(_Frame("substitution"))
        elif follower == "{":
            self._take()
            self.stack.append(_Frame("param"))
        elif follower == "[":
            self._take()
            self.stack.append(_Frame("bracket"))

    # -- here-documents --------------------------------------------------------------------

    def _here_operator(self) -> None:
        """After `<<` (or `<<-`): read the delimiter word; its body starts at the next line."""
        strip = self._peek() == "-"
        if strip:
            self._take()
        while self._peek() in (" ", "\t"):
            self._take()
        word = []
        while True:
            c = self._peek()
            if c is None:
                if self.k < len(self.pieces):  # a placeholder in the delimiter: a body follows
                    self.heredoc.inside = True
                break
            if c in _BREAKS:
                break
            self._take()
            if c not in "'\"\\":
                word.append(c)
        self.heredoc.pending.append(("".join(word), strip))

    def _newline(self, frame: _Frame) -> None:
        if self.heredoc.pending:
            self.heredoc.inside = True

    def _heredoc_char(self, c: str) -> None:
        state = self.heredoc
        if c != "\n":
            state.line.append(c)
            return
        line = "".join(state.line)
        state.line.clear()
        if not state.pending:
            return
        delimiter, strip = state.pending[0]
        if (line.lstrip("\t") if strip else line) == delimiter:
            state.pending.pop(0)
            state.inside = bool(state.pending)
