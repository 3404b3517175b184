"""The replay output directory: locked, written whole or not at all, with a manifest the report checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from leadflow.replay import Source, replay
from leadflow.replay_output import (LOCK, MANIFEST, OUTPUT_FILES, CheckedFile, OutputBusy, OutputError,
                                    ReplayOutput, read_manifest)
from lifecycle.errors import ConfigError
from lifecycle.policy import Policy

EVENT = (b'{"event_id":"e1","event_type":"form_fill","lead_id":"L1","occurred_at":"2026-03-02T10:00:00Z",'
         b'"form_type":"demo_request"}\n')


def write(directory: Path, lifecycle: bytes = b'{"a":1}\n', alerts: bytes = b"", dlq: bytes = b"",
          **commit: object) -> dict:
    with ReplayOutput.open(directory) as out:
        files = out.begin()
        for file, data in zip(files, (lifecycle, alerts, dlq)):
            if data:
                file.write(data)
        return out.commit(**{"inputs": ["in.jsonl"], "until": None, **commit})


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_commit_puts_the_files_and_the_manifest_in_place_and_leaves_nothing_else(tmp_path: Path) -> None:
    manifest = write(tmp_path / "out", b'{"a":1}\n{"a":2}\n', b'{"b":1}\n', until=1772445600000)
    assert sorted(contents(tmp_path / "out")) == sorted([*OUTPUT_FILES, MANIFEST])   # no lock, no temporaries
    on_disk = json.loads((tmp_path / "out" / MANIFEST).read_bytes())
    assert on_disk == manifest
    assert manifest["files"]["lifecycle.jsonl"]["lines"] == 2 and manifest["files"]["alerts.jsonl"]["bytes"] == 8
    assert manifest["files"]["dlq.jsonl"] == {"lines": 0, "bytes": 0, "sha256": manifest["files"]["dlq.jsonl"]["sha256"]}
    assert manifest["inputs"] == ["in.jsonl"] and manifest["policy"] == "built-in"
    assert manifest["until"] == "2026-03-02T10:00:00.000Z" and manifest["completed_at"].endswith("Z")
    assert manifest["leadflow_version"] and "policy_version" not in manifest
    assert write(tmp_path / "v", policy_version="abc123")["policy_version"] == "abc123"


def test_a_run_that_is_not_committed_leaves_the_previous_output_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write(out, b'{"old":1}\n')
    before = contents(out)
    with pytest.raises(RuntimeError):
        with ReplayOutput.open(out) as output:
            lifecycle, _, _ = output.begin()
            lifecycle.write(b'{"new":1}\n' * 1000)
            assert len(list(out.glob(".*.tmp"))) == 3
            raise RuntimeError("interrupted")
    assert contents(out) == before


def test_a_second_run_on_the_same_directory_is_refused_naming_the_pid(tmp_path: Path) -> None:
    with ReplayOutput.open(tmp_path) as first:
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(OutputBusy, match=rf"^{tmp_path} is in use by pid {os.getpid()} "):
            ReplayOutput.open(tmp_path)
        first.begin()
    assert not (tmp_path / LOCK).exists()
    ReplayOutput.open(tmp_path).close()                      # free again


def test_temporary_files_of_a_killed_run_are_removed_by_the_next(tmp_path: Path) -> None:
    leftovers = [tmp_path / ".lifecycle.jsonl.4242.tmp", tmp_path / ".manifest.json.4242.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    (tmp_path / ".unrelated").write_bytes(b"mine")
    write(tmp_path)
    assert not any(path.exists() for path in leftovers) and (tmp_path / ".unrelated").exists()


def test_a_symlink_in_place_of_an_output_file_is_replaced_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "dlq.jsonl").symlink_to(victim)
    (out / LOCK).symlink_to(tmp_path / "lock-victim")
    with pytest.raises(OutputError, match="lock file"):   # O_NOFOLLOW: a planted lock symlink is refused
        ReplayOutput.open(out)
    (out / LOCK).unlink()
    write(out, dlq=b'{"error":"x"}\n')
    assert victim.read_bytes() == b"precious" and not (tmp_path / "lock-victim").exists()
    assert not (out / "dlq.jsonl").is_symlink() and (out / "dlq.jsonl").read_bytes() == b'{"error":"x"}\n'


def test_a_dangling_symlink_as_the_directory_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    with pytest.raises(OutputError, match=r"is a symlink to .*gone, which does not exist"):
        ReplayOutput.open(tmp_path / "out")


def test_a_full_disk_names_the_file_and_leaves_the_previous_output(tmpfs) -> None:
    disk = tmpfs("1m")
    write(disk, b'{"old":1}\n')
    before = contents(disk)
    with pytest.raises(OutputError, match=r"cannot write .*\.lifecycle\.jsonl\.\d+\.tmp: No space left on device"):
        with ReplayOutput.open(disk) as output:
            lifecycle, _, _ = output.begin()
            for _ in range(3000):
                lifecycle.write(b"x" * 1023 + b"\n")
            output.commit(inputs=[], until=None)
    assert contents(disk) == before


def test_replay_into_a_path_commits_and_the_report_reads_it_back(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(EVENT + b"{broken\n")
    replay([Source(str(source))], tmp_path / "out", Policy(), until=1772445600000)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["inputs"] == [str(source)] and manifest["until"] == "2026-03-02T10:00:00.000Z"
    assert manifest["policy_version"] == Policy().policy_version
    assert manifest["files"]["dlq.jsonl"]["lines"] == 1
    assert [n for n, _ in CheckedFile(tmp_path / "out", "lifecycle.jsonl", manifest).lines()] == [1, 2]


# -- what the report refuses --------------------------------------------------------------------------

def test_no_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no manifest\.json: not a replay output directory"):
        read_manifest(tmp_path)
    (tmp_path / "lifecycle.jsonl").write_bytes(b"{}\n")
    with pytest.raises(ConfigError, match=r"no manifest\.json: not a complete replay output"):
        read_manifest(tmp_path)


def test_a_missing_or_resized_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, alerts=b'{"b":1}\n')
    (tmp_path / "alerts.jsonl").write_bytes(b'{"b":1}\n{"b":2}\n')
    with pytest.raises(ConfigError, match=r"alerts\.jsonl: 16 bytes, but manifest\.json says 8"):
        read_manifest(tmp_path)
    (tmp_path / "alerts.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"alerts\.jsonl: missing, but manifest\.json lists it"):
        read_manifest(tmp_path)


def test_a_file_of_the_same_size_from_another_run_is_refused(tmp_path: Path) -> None:
    write(tmp_path, b'{"a":1}\n')
    (tmp_path / "lifecycle.jsonl").write_bytes(b'{"a":2}\n')
    manifest = read_manifest(tmp_path)
    with pytest.raises(ConfigError, match=r"lifecycle\.jsonl: content differs from manifest\.json"):
        list(CheckedFile(tmp_path, "lifecycle.jsonl", manifest).lines())


@pytest.mark.parametrize("text", ["{nope", "[]", '{"format": "other"}', '{"format": "leadflow-replay/1", "files": {}}'])
def test_a_manifest_that_is_not_ours_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(ConfigError, match=r"manifest\.json: not a leadflow replay manifest"):
        read_manifest(tmp_path)
