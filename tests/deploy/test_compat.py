"""schemas.compat: Avro backward compatibility, schema pairs directly and against git history."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from schemas.compat import backward_problems, main

OLD: dict[str, Any] = {
    "type": "record", "name": "FormFill", "namespace": "io.leadflow.events",
    "fields": [
        {"name": "lead_id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "source", "type": ["null", "string"], "default": None},
        {"name": "channel", "type": {"type": "enum", "name": "Channel", "symbols": ["call", "email"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}


def changed(**edits: Any) -> dict[str, Any]:
    """OLD with fields replaced (``name=field``), removed (``name=None``) or added."""
    schema = json.loads(json.dumps(OLD))
    fields = {f["name"]: f for f in schema["fields"]}
    for name, field in edits.items():
        if field is None:
            fields.pop(name)
        else:
            fields[name] = {"name": name, **field}
    schema["fields"] = list(fields.values())
    return schema


def paths(new: Any, old: Any = OLD) -> list[str]:
    return [p.path for p in backward_problems(new, old)]


@pytest.mark.parametrize("new", [
    OLD,
    changed(utm={"type": ["null", "string"], "default": None}),         # added with a default
    changed(count=None),                                                # removed
    changed(count={"type": "long"}),                                    # int -> long
    changed(count={"type": "double"}),                                  # int -> double
    changed(lead_id={"type": "bytes"}),                                 # string -> bytes
    changed(count={"type": ["null", "long"], "default": None}),         # int -> union with long
    changed(channel={"type": {"type": "enum", "name": "Channel", "symbols": ["call", "email", "sms"]}}),
    changed(tags={"type": {"type": "array", "items": "bytes"}}),
    changed(source={"type": ["null", "string", "long"], "default": None}),
], ids=["same", "add-default", "remove", "int-long", "int-double", "string-bytes", "int-union",
        "enum-add", "array-items", "union-widen"])
def test_compatible_changes_pass(new: dict[str, Any]) -> None:
    assert backward_problems(new, OLD) == []


@pytest.mark.parametrize(("new", "path", "words"), [
    (changed(utm={"type": "string"}), "FormFill.utm", "added without a default"),
    (changed(count={"type": "string"}), "FormFill.count", "type changed from int to string"),
    (changed(count={"type": "float"}, lead_id={"type": "int"}), "FormFill.lead_id", "from string to int"),
    (changed(channel={"type": {"type": "enum", "name": "Channel", "symbols": ["call"]}}),
     "FormFill.channel", "lost symbols ['email']"),
    (changed(source={"type": "string"}), "FormFill.source", "branch null"),
    (changed(tags={"type": {"type": "array", "items": "int"}}), "FormFill.tags[]", "from string to int"),
    (changed(channel={"type": {"type": "enum", "name": "Medium", "symbols": ["call", "email"]}}),
     "FormFill.channel", "renamed from Channel to Medium"),
], ids=["add-no-default", "int-string", "string-int", "enum-remove", "union-narrow", "array-items",
        "enum-rename"])
def test_incompatible_changes_name_the_field(new: dict[str, Any], path: str, words: str) -> None:
    problems = backward_problems(new, OLD)
    assert path in [p.path for p in problems]
    assert any(words in str(p) for p in problems), [str(p) for p in problems]


def test_long_to_int_is_a_narrowing() -> None:
    assert paths(changed(count={"type": "int"}), changed(count={"type": "long"})) == ["FormFill.count"]


def test_enum_default_allows_removing_symbols_and_aliases_allow_renames() -> None:
    new = changed(channel={"type": {"type": "enum", "name": "Channel", "symbols": ["call", "other"],
                                    "default": "other"}})
    assert backward_problems(new, OLD) == []
    renamed = dict(OLD, name="WebForm", aliases=["FormFill"])
    assert backward_problems(renamed, OLD) == []


def test_nested_records_and_named_references() -> None:
    old = {"type": "record", "name": "Outer", "fields": [
        {"name": "a", "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]}},
        {"name": "b", "type": "Inner"}]}
    new = json.loads(json.dumps(old))
    new["fields"][0]["type"]["fields"].append({"name": "y", "type": "int"})
    assert paths(new, old) == ["Outer.a.y"]


def test_the_bundled_schemas_are_compatible_with_themselves() -> None:
    for path in (Path(__file__).resolve().parents[2] / "schemas").glob("*.avsc"):
        schema = json.loads(path.read_text())
        assert backward_problems(schema, schema) == [], path.name


# -- against git history --------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(repo)})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "form_fill.avsc").write_text(json.dumps(OLD, indent=2))
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "v1")
    return tmp_path


def _commit(repo: Path, schema: dict[str, Any]) -> None:
    (repo / "schemas" / "form_fill.avsc").write_text(json.dumps(schema, indent=2))
    _git(repo, "commit", "-q", "-am", "change")


def test_first_version_passes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(repo / "schemas")]) == 0
    assert "no previous version" in capsys.readouterr().out


def test_compatible_commit_passes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _commit(repo, changed(utm={"type": ["null", "string"], "default": None}))
    assert main(["--dir", str(repo / "schemas")]) == 0
    assert "schemas/form_fill.avsc: backward compatible with HEAD~1" in capsys.readouterr().out


def test_incompatible_commit_fails_naming_file_and_field(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _commit(repo, changed(utm={"type": "string"}))
    assert main(["--dir", str(repo / "schemas")]) == 1
    err = capsys.readouterr().err
    assert "schemas/form_fill.avsc: FormFill.utm: field added without a default" in err
    assert "not backward compatible with HEAD~1" in err


def test_uncommitted_change_against_head(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "schemas" / "form_fill.avsc").write_text(json.dumps(changed(count={"type": "string"})))
    assert main(["--dir", str(repo / "schemas"), "--against", "HEAD"]) == 1
    assert "FormFill.count: type changed from int to string" in capsys.readouterr().err


def test_new_file_and_bad_revision(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "schemas" / "new.avsc").write_text(json.dumps(dict(OLD, name="New")))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "new schema")
    assert main(["--dir", str(repo / "schemas")]) == 0
    assert "schemas/new.avsc: no previous version at HEAD~1" in capsys.readouterr().out
    assert main(["--dir", str(repo / "schemas"), "--against", "no-such-rev"]) == 2
    assert "unknown revision 'no-such-rev'" in capsys.readouterr().err


def test_this_repository_s_schemas_are_backward_compatible(capsys: pytest.CaptureFixture[str]) -> None:
    """The CI check itself: every schemas/*.avsc against its version in the previous commit."""
    code = main(["--quiet"])
    assert code == 0, capsys.readouterr().err
