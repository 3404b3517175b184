"""Avro backward compatibility: can a reader with the new schema read data written with the old one?

That is the schema registry's ``BACKWARD`` rule, and the one that matters for leadflow: a worker
upgraded to a new ``schemas/*.avsc`` must still decode every message already on the topics (and
replays from the start of history). The rules are Avro's schema resolution (specification,
"Schema Resolution"), reader = new schema, writer = old schema:

- a field in the new schema that the old one lacks needs a ``default``; removing a field is fine;
- a field's type may change only by promotion: int -> long -> float -> double, string <-> bytes;
- enum symbols may be added, not removed (unless the new enum has a ``default``);
- records and enums and fixed keep their name (or list the old one in ``aliases``); fixed keeps its size;
- a union in the old schema needs every branch readable by the new type; a new union needs one
  branch that reads the old type; arrays and maps follow their items and values.

``python -m schemas.compat [--against REV]`` compares every ``schemas/*.avsc`` in the work tree with
its version at ``REV`` (default ``HEAD~1``); a file with no previous version passes. Exit status 0
when compatible, 1 with one line per problem (the file and the field), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
#: writer type -> reader types that can read it (Avro promotions)
PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"int", "long", "float", "double"}),
    "long": frozenset({"long", "float", "double"}),
    "float": frozenset({"float", "double"}),
    "string": frozenset({"string", "bytes"}),
    "bytes": frozenset({"bytes", "string"}),
}
_NAMED = ("record", "error", "enum", "fixed")


class SchemaFileError(ValueError):
    """A schema that is not JSON, or not an Avro schema this checker understands."""


@dataclass(frozen=True)
class Problem:
    """One incompatibility: where (``Record.field.subfield``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class _Names:
    """Full name -> definition of every named type in one schema (records, enums, fixed)."""

    def __init__(self, schema: Any) -> None:
        self.types: dict[str, dict[str, Any]] = {}
        self._collect(schema, "")

    @staticmethod
    def full(name: str, namespace: str) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def _collect(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in _NAMED:
                if "name" not in schema:
                    raise SchemaFileError(f"{kind} without a name")
                full = self.full(schema["name"], schema.get("namespace", namespace))
                self.types[full] = schema
                namespace = full.rpartition(".")[0]
                if kind in ("record", "error"):
                    for f in schema.get("fields", []):
                        self._collect(f.get("type"), namespace)
            elif kind == "array":
                self._collect(schema.get("items"), namespace)
            elif kind == "map":
                self._collect(schema.get("values"), namespace)
            elif isinstance(kind, (dict, list)):
                self._collect(kind, namespace)

    def resolve(self, schema: Any, namespace: str = "") -> Any:
        """Named references replaced by their definition; ``{"type": "int"}`` -> ``"int"``."""
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return schema
            for candidate in (self.full(schema, namespace), schema):
                if candidate in self.types:
                    return self.types[candidate]
            raise SchemaFileError(f"unknown type {schema!r}")
        if isinstance(schema, dict) and schema.get("type") not in (*_NAMED, "array", "map"):
            return self.resolve(schema.get("type"), namespace)
        return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    kind = schema.get("type")
    return "record" if kind == "error" else kind


def _describe(schema: Any) -> str:
    kind = _kind(schema)
    if kind in ("record", "enum", "fixed"):
        return f"{kind} {schema['name']}"
    if kind == "union":
        return "union [" + ", ".join(_describe(b) for b in schema) + "]"
    if kind == "array":
        return "array"
    if kind == "map":
        return "map"
    return kind


class _Checker:
    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader_names = _Names(reader)
        self.writer_names = _Names(writer)
        self.problems: list[Problem] = []
        self._seen: set[tuple[int, int]] = set()

    def r(self, schema: Any, ns: str) -> Any:
        return self.reader_names.resolve(schema, ns)

    def w(self, schema: Any, ns: str) -> Any:
        return self.writer_names.resolve(schema, ns)

    def readable(self, reader: Any, writer: Any, rns: str, wns: str) -> bool:
        """Would ``check`` find nothing? (Used to choose a union branch; records by name only.)"""
        reader, writer = self.r(reader, rns), self.w(writer, wns)
        rk, wk = _kind(reader), _kind(writer)
        if wk == "union":
            return all(self.readable(reader, b, rns, wns) for b in writer)
        if rk == "union":
            return any(self.readable(b, writer, rns, wns) for b in reader)
        if wk in PRIMITIVES:
            return rk == wk or rk in PROMOTIONS.get(wk, ())
        if rk != wk:
            return False
        if rk in ("record", "enum", "fixed"):
            return self._same_name(reader, writer, rns, wns)
        return True

    def _same_name(self, reader: dict[str, Any], writer: dict[str, Any], rns: str, wns: str) -> bool:
        wname = writer["name"].rpartition(".")[2]
        names = {reader["name"].rpartition(".")[2], *(a.rpartition(".")[2] for a in reader.get("aliases", []))}
        return wname in names

    def check(self, reader: Any, writer: Any, path: str, rns: str = "", wns: str = "") -> None:
        reader, writer = self.r(reader, rns), self.w(writer, wns)
        key = (id(reader), id(writer))
        if key in self._seen:          # recursive types: each pair once
            return
        if isinstance(reader, dict) and isinstance(writer, dict):
            self._seen.add(key)
        rk, wk = _kind(reader), _kind(writer)

        if wk == "union":
            for branch in writer:
                if not self.readable(reader, branch, rns, wns):
                    self.problems.append(Problem(path, f"the old type {_describe(writer)} has a branch "
                                                       f"{_describe(self.w(branch, wns))} that the new type "
                                                       f"{_describe(reader)} cannot read"))
                    return
            for branch in writer:
                self._check_branch(reader, branch, path, rns, wns)
            return
        if rk == "union":
            self._check_branch(reader, writer, path, rns, wns)
            return
        if wk in PRIMITIVES:
            if not (rk == wk or rk in PROMOTIONS.get(wk, ())):
                allowed = sorted(PROMOTIONS.get(wk, {wk}) - {wk})
                hint = f" (it may only become {', '.join(allowed)})" if allowed else ""
                self.problems.append(Problem(path, f"type changed from {wk} to {_describe(reader)}{hint}"))
            return
        if rk != wk:
            self.problems.append(Problem(path, f"type changed from {_describe(writer)} to {_describe(reader)}"))
            return
        if rk in ("record", "enum", "fixed") and not self._same_name(reader, writer, rns, wns):
            self.problems.append(Problem(path, f"{rk} renamed from {writer['name']} to {reader['name']} "
                                               f"without listing {writer['name']!r} in aliases"))
            return
        if rk == "record":
            self._record(reader, writer, path)
        elif rk == "enum":
            removed = [s for s in writer.get("symbols", []) if s not in reader.get("symbols", [])]
            if removed and "default" not in reader:
                self.problems.append(Problem(path, f"enum {reader['name']} lost symbols {removed}: data "
                                                   "written with them cannot be read (add them back, or "
                                                   "give the enum a default)"))
        elif rk == "fixed":
            if reader.get("size") != writer.get("size"):
                self.problems.append(Problem(path, f"fixed {reader['name']} size changed from "
                                                   f"{writer.get('size')} to {reader.get('size')}"))
        elif rk == "array":
            self.check(reader.get("items"), writer.get("items"), f"{path}[]", rns, wns)
        elif rk == "map":
            self.check(reader.get("values"), writer.get("values"), f"{path}{{}}", rns, wns)

    def _check_branch(self, reader: Any, writer: Any, path: str, rns: str, wns: str) -> None:
        rk = _kind(reader)
        if rk != "union":
            self.check(reader, writer, path, rns, wns)
            return
        for branch in reader:       # Avro: the first reader branch that matches the writer type
            if self.readable(branch, writer, rns, wns):
                self.check(branch, writer, path, rns, wns)
                return
        self.problems.append(Problem(path, f"the old type {_describe(self.w(writer, wns))} is not "
                                           f"readable by any branch of the new {_describe(reader)}"))

    def _record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        rns = _Names.full(reader["name"], reader.get("namespace", "")).rpartition(".")[0]
        wns = _Names.full(writer["name"], writer.get("namespace", "")).rpartition(".")[0]
        base = path or reader["name"].rpartition(".")[2]
        written = {f["name"]: f for f in writer.get("fields", [])}
        for field in reader.get("fields", []):
            names = [field["name"], *field.get("aliases", [])]
            old = next((written[n] for n in names if n in written), None)
            where = f"{base}.{field['name']}"
            if old is None:
                if "default" not in field:
                    self.problems.append(Problem(where, "field added without a default: data written "
                                                        "with the old schema has no value for it"))
                continue
            self.check(field["type"], old["type"], where, rns, wns)


def backward_problems(new: Any, old: Any) -> list[Problem]:
    """Every reason a reader with ``new`` cannot read data written with ``old`` ([] = compatible).

    Schemas are parsed JSON (dicts/lists/strings) or JSON text.
    """
    new = json.loads(new) if isinstance(new, (str, bytes)) and str(new).lstrip()[:1] in "{[\"" else new
    old = json.loads(old) if isinstance(old, (str, bytes)) and str(old).lstrip()[:1] in "{[\"" else old
    checker = _Checker(new, old)
    checker.check(new, old, "")
    return checker.problems


# -- against git history --------------------------------------------------------------------------


class GitError(RuntimeError):
    """git could not answer (not a repository, unknown revision)."""


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)


def previous_version(path: Path, rev: str, repo: Path) -> str | None:
    """The text of ``path`` at ``rev``; None when it did not exist there."""
    relative = path.resolve().relative_to(repo.resolve()).as_posix()
    done = _git(["show", f"{rev}:{relative}"], repo)
    if done.returncode == 0:
        return done.stdout
    if _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo).returncode != 0:
        raise GitError(f"unknown revision {rev!r}")
    return None


def default_revision(repo: Path) -> str | None:
    """``HEAD~1``, or None in a repository with a single commit (nothing to compare with)."""
    if _git(["rev-parse", "--verify", "--quiet", "HEAD~1^{commit}"], repo).returncode == 0:
        return "HEAD~1"
    if _git(["rev-parse", "--verify", "--quiet", "HEAD"], repo).returncode != 0:
        raise GitError(f"{repo} is not a git repository with commits")
    return None


def check_directory(directory: Path, rev: str | None, repo: Path) -> tuple[list[str], list[str]]:
    """``(problems, notes)`` for every ``*.avsc`` in ``directory`` against ``rev``."""
    problems: list[str] = []
    notes: list[str] = []
    for path in sorted(directory.glob("*.avsc")):
        shown = path.resolve().relative_to(repo.resolve()).as_posix()
        old_text = previous_version(path, rev, repo) if rev is not None else None
        if old_text is None:
            notes.append(f"{shown}: no previous version{f' at {rev}' if rev else ''}, nothing to check")
            continue
        try:
            new = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{shown}: not valid JSON: {exc}")
            continue
        try:
            old = json.loads(old_text)
        except ValueError:
            notes.append(f"{shown}: the version at {rev} is not valid JSON, nothing to check")
            continue
        try:
            found = backward_problems(new, old)
        except SchemaFileError as exc:
            problems.append(f"{shown}: {exc}")
            continue
        problems.extend(f"{shown}: {p} (not backward compatible with {rev})" for p in found)
        if not found:
            notes.append(f"{shown}: backward compatible with {rev}")
    return problems, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.compat",
        description="Check that every schemas/*.avsc can still read data written with its previous "
                    "committed version (Avro backward compatibility).")
    parser.add_argument("--against", metavar="REV", default=None,
                        help="git revision holding the previous versions (default HEAD~1)")
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parent),
                        help="directory of the .avsc files (default: this package's)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    args = parser.parse_args(argv)
    directory = Path(args.dir)
    try:
        top = _git(["rev-parse", "--show-toplevel"], directory)
        if top.returncode != 0:
            raise GitError(f"{directory} is not inside a git repository")
        repo = Path(top.stdout.strip())
        rev = args.against if args.against is not None else default_revision(repo)
        problems, notes = check_directory(directory, rev, repo)
    except GitError as exc:
        print(f"schemas.compat: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        for note in notes:
            print(note)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
