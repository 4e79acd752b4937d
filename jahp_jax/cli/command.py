"""What every command line shares: its own absl flags, a --help that lists them, one-line errors.

A command module (`jahp_jax.cli.codec`, ..., and the experiments' scripts) makes one `Command`,
defines its flags on `Command.flags` at import with absl's `flags.DEFINE_*(...,
flag_values=COMMAND.flags)`, and its `main(argv)` is `COMMAND.run(body, argv)`:

    COMMAND = Command("jahp-export", __doc__)
    FLAGS = COMMAND.flags
    _ARITHMETIC = flags.DEFINE_enum("arithmetic", ..., flag_values=FLAGS)

    def main(argv: Sequence[str] | None = None) -> int:
        return COMMAND.run(_export, argv)

Each command has an absl `FlagValues` of its own rather than absl's global `flags.FLAGS`: the
commands share flag names with other meanings (`--checkpoint` is one folder for `jahp-codec`, a
repeatable one for `jahp-eval`; `--verbosity` takes names), the tests run several commands in one
process, and `--help` (or `-h`) prints the command's docstring and exactly its flags, with absl's
`--flagfile`. Importing a command module registers nothing on `flags.FLAGS`.

`run` parses with absl (`--name=value`, `--name value`, `--[no]name`, `--flagfile=FILE`,
positional arguments anywhere, `--` ending the flags) and turns every parse error into one line,
`error: ...; see <command> --help`, with exit status 2, as a `UsageError` raised by the body is;
the body's own return value is the exit status otherwise.

Flags of a config dataclass are made from its fields (`Command.define_fields`): the field's name,
type and default, and its help text from `field.metadata["help"]`, so that each default and each
help text has one home, the dataclass.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Callable, Iterable, Sequence
from types import NoneType, UnionType
from typing import Any

from absl import flags

HELP = "help"  # The metadata key of a config field's help text.
_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           str: flags.DEFINE_string}  # fmt: skip


class UsageError(ValueError):
    """A command line that cannot run (wrong positional arguments, a missing flag): one line."""


class _HelpRequested(Exception):
    pass


class _HelpFlag(flags.BooleanFlag):
    """--help / -h: stops the parse (as absl's own help flag does) for `Command.run` to answer."""

    def __init__(self):
        super().__init__("help", False, "Show this help and exit.", short_name="h")

    def parse(self, argument):
        super().parse(argument)
        if self.value:
            raise _HelpRequested


class Command:
    """A command line: its name (for messages), its help text and its own absl FlagValues."""

    def __init__(self, name: str, doc: str, *, takes_args: bool = False,
                 known_only: bool = False):  # fmt: skip
        """name: as the user types it ("jahp-codec"); doc: the help text (the module docstring);
        takes_args: the body takes positional arguments (else `run` refuses them); known_only:
        pass flags this command does not define on to the body as positional arguments
        instead of refusing them (a sweep's training flags)."""
        self.name = name
        self.doc = doc.strip()
        self.takes_args = takes_args or known_only
        self.known_only = known_only
        self.flags = flags.FlagValues()
        flags.DEFINE_flag(_HelpFlag(), self.flags)

    def help(self) -> str:
        """What --help prints: the docstring, then every flag (listed under the command's name,
        whichever module defined it) with its default and help, and absl's --flagfile."""
        listing = flags.FlagValues()
        for flag in {id(self.flags[name]): self.flags[name] for name in self.flags}.values():
            flags.DEFINE_flag(flag, listing, module_name=self.name)
        return f"{self.doc}\n\nflags:\n{listing.get_help()}\n"

    def run(self, body: Callable[[list[str]], int | None], argv: Sequence[str] | None = None
            ) -> int:  # fmt: skip
        """Parse `argv` (the arguments after the program name; default: sys.argv[1:]) into
        `flags` and return body(positional arguments) (None counts as 0), or the exit status of
        --help (0) or of a command line that cannot run (2, after one `error:` line: a flag
        absl cannot parse, positional arguments where none are taken, a `UsageError`)."""
        try:
            args = self.parse(argv)
            if args and not self.takes_args:
                raise UsageError(f"unexpected arguments {args}; flags take the form --name=value")
            return body(args) or 0
        except _HelpRequested:
            try:
                print(self.help(), end="", flush=True)
            except BrokenPipeError:  # `--help | head`: stdout closed early
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except (flags.Error, UsageError) as error:
            message = " ".join(str(error).split()).removeprefix("ERROR:: ")  # absl's flagfile
            print(f"error: {message}; see {self.name} --help", file=sys.stderr)
            return 2

    def parse(self, argv: Sequence[str] | None = None) -> list[str]:
        """Parse `argv` (default: sys.argv[1:]) into `flags`, every flag from its default;
        returns the positional arguments. Raises absl's flags.Error for a bad command line."""
        argv = sys.argv[1:] if argv is None else list(argv)
        self.flags.unparse_flags()  # Every parse starts from the defaults (tests run several).
        return self.flags([self.name, *argv], known_only=self.known_only)[1:]

    def define_fields(self, config: type, exclude: Iterable[str] = ()) -> list[str]:
        """Define one flag per field of the dataclass `config` (but `exclude`): the field's
        name, its type (bool, int, float, str, or one of them | None), its default (None for a
        field without one: the command checks that it was given) and its metadata["help"].
        Returns the names defined."""
        exclude = set(exclude)
        fields = {field.name: field for field in dataclasses.fields(config)}
        unknown = exclude - set(fields)
        if unknown:
            raise ValueError(f"{config.__name__} has no fields {sorted(unknown)}")
        types = typing.get_type_hints(config)
        names = []
        for name, field in fields.items():
            if name in exclude:
                continue
            if HELP not in field.metadata:
                raise ValueError(f"{config.__name__}.{name} has no metadata['{HELP}']")
            kind = types[name]
            if isinstance(kind, UnionType):  # X | None
                kind = next(arg for arg in typing.get_args(kind) if arg is not NoneType)
            if kind not in _DEFINE:
                raise TypeError(f"{config.__name__}.{name}: no flag type for {types[name]}")
            default = None if field.default is dataclasses.MISSING else field.default
            _DEFINE[kind](name, default, field.metadata[HELP], flag_values=self.flags)
            names.append(name)
        return names

    def values(self, names: Iterable[str]) -> dict[str, Any]:
        """{name: parsed value} of the flags `names` (after `run` parsed them)."""
        return {name: self.flags[name].value for name in names}
