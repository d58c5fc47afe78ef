"""Output directories: a run replaces only what deleverage wrote, and never the working directory or a parent.

Each case of issue 10 §2 is here: a user's ``keep.txt`` survives (it was deleted), ``--out ..`` and
``--out .`` from inside a folder are refused cleanly with nothing renamed (they raised OSError / ValueError
and left ``..partial-*`` folders), and an interrupted or failed run leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from deleverage.errors import InvalidInput
from deleverage.outputs import (
    MANIFEST_NAME,
    atomic_output_dir,
    check_output_dir,
    plan_output_dir,
    read_manifest,
)


def _tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` with its content (directories as '<dir>')."""
    out = {}
    for path in sorted(root.rglob("*")):
        out[path.relative_to(root).as_posix()] = "<dir>" if path.is_dir() else path.read_text(errors="replace")
    return out


def _write_run(target: Path, files: dict[str, str], **kwargs) -> None:
    with atomic_output_dir(target, **kwargs) as work:
        for name, text in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(text)


def test_a_users_directory_is_refused_and_keep_txt_survives(tmp_path) -> None:
    users = tmp_path / "mine"
    users.mkdir()
    (users / "keep.txt").write_text("precious")
    before = _tree(tmp_path)
    with pytest.raises(InvalidInput) as info:
        _write_run(users, {"summary.json": "{}"})
    message = str(info.value)
    assert "mine" in message and "--force" in message and "keep.txt" in message and "\n" not in message
    assert _tree(tmp_path) == before  # nothing renamed, deleted or left beside it


@pytest.mark.parametrize("out", [".", "..", "../..", "/", "sub/..", "link-to-parent", "link-to-cwd"])
def test_the_working_directory_and_its_parents_are_never_touched(out, tmp_path, monkeypatch) -> None:
    inner = tmp_path / "folder" / "inner"
    inner.mkdir(parents=True)
    (inner / "sub").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("x")
    os.symlink("..", inner / "link-to-parent")
    os.symlink(".", inner / "link-to-cwd")
    monkeypatch.chdir(inner)
    before = _tree(tmp_path)
    for force in (False, True):
        with pytest.raises(InvalidInput) as info:
            _write_run(Path(out), {"summary.json": "{}"}, force=force)
        assert "working directory" in str(info.value)
    assert _tree(tmp_path) == before
    assert not list(tmp_path.rglob("*partial*")) and not list(tmp_path.rglob("*.old-*"))


def test_a_previous_run_is_swapped_whole_and_only_its_files_go(tmp_path) -> None:
    target = tmp_path / "run"
    _write_run(target, {"summary.json": "1", "report.html": "r1", "extra/part.csv": "p"}, command="replay",
               run_key="k1")
    manifest = read_manifest(target)
    assert manifest is not None and manifest.command == "replay" and manifest.run_key == "k1"
    assert sorted(manifest.files) == ["extra/part.csv", "report.html", "summary.json"]
    _write_run(target, {"summary.json": "2"}, command="replay", run_key="k2")
    assert _tree(target) == {MANIFEST_NAME: (target / MANIFEST_NAME).read_text(), "summary.json": "2"}
    assert read_manifest(target).run_key == "k2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no .old-* or .partial-* left


def test_a_run_directory_with_a_users_file_is_refused_then_force_keeps_it(tmp_path) -> None:
    target = tmp_path / "run"
    _write_run(target, {"summary.json": "1", "report.html": "r1", "stale.png": "s"})
    (target / "notes.txt").write_text("my notes")
    with pytest.raises(InvalidInput, match="notes.txt"):
        _write_run(target, {"summary.json": "2"})
    assert (target / "summary.json").read_text() == "1"
    _write_run(target, {"summary.json": "2", "report.html": "r2"}, force=True)
    tree = _tree(target)
    assert tree["notes.txt"] == "my notes" and tree["summary.json"] == "2" and tree["report.html"] == "r2"
    assert "stale.png" not in tree  # ours from the earlier run, not written again: removed
    assert sorted(read_manifest(target).files) == ["report.html", "summary.json"]  # notes.txt is not ours


def test_force_never_overwrites_a_file_deleverage_did_not_write(tmp_path) -> None:
    target = tmp_path / "reports"
    target.mkdir()
    (target / "summary.json").write_text("the user's own")
    (target / "other.txt").write_text("o")
    with pytest.raises(InvalidInput, match="summary.json"):
        check_output_dir(target, force=True, writes=["summary.json"])
    with pytest.raises(InvalidInput, match="summary.json"):
        _write_run(target, {"summary.json": "run"}, force=True)
    assert _tree(target) == {"other.txt": "o", "summary.json": "the user's own"}
    _write_run(target, {"report.html": "r"}, force=True)  # no clash: written beside the user's files
    assert _tree(target)["other.txt"] == "o" and _tree(target)["report.html"] == "r"


def test_a_file_changed_since_deleverage_wrote_it_is_the_users(tmp_path) -> None:
    target = tmp_path / "run"
    _write_run(target, {"summary.json": "1", "report.html": "r1"})
    (target / "report.html").write_text("annotated by hand")
    with pytest.raises(InvalidInput, match="report.html"):
        _write_run(target, {"summary.json": "2"})
    assert (target / "report.html").read_text() == "annotated by hand"


def test_an_empty_subdirectory_is_the_users_too(tmp_path) -> None:
    target = tmp_path / "run"
    _write_run(target, {"summary.json": "1"})
    (target / "drafts").mkdir()
    with pytest.raises(InvalidInput, match="drafts"):
        _write_run(target, {"summary.json": "2"})
    assert (target / "drafts").is_dir()


@pytest.mark.parametrize("exception", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_run_leaves_everything_as_it_was(exception, tmp_path) -> None:
    target = tmp_path / "a" / "b" / "run"  # parents created for the run are removed again
    with pytest.raises(type(exception)), atomic_output_dir(target) as work:
        (work / "summary.json").write_text("{}")
        raise exception
    assert list(tmp_path.iterdir()) == []
    previous = tmp_path / "prev"
    _write_run(previous, {"summary.json": "1"})
    before = _tree(tmp_path)
    with pytest.raises(type(exception)), atomic_output_dir(previous) as work:
        (work / "summary.json").write_text("2")
        raise exception
    assert _tree(tmp_path) == before


def test_an_empty_directory_is_used_and_permissions_follow_the_umask(tmp_path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    old = os.umask(0o022)
    try:
        _write_run(target, {"summary.json": "1"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # not mkdtemp's 0700
    assert (target / "summary.json").read_text() == "1"


def test_a_run_directory_of_before_manifests_is_recognised(tmp_path) -> None:
    legacy = tmp_path / "out-replay"
    legacy.mkdir()
    (legacy / "summary.json").write_text(json.dumps({"run_key": "abcd", "key": {}, "policies": {}}))
    (legacy / "report.html").write_text("<html>")
    assert plan_output_dir(legacy).kind == "swap"
    _write_run(legacy, {"summary.json": "new"})
    assert sorted(p.name for p in legacy.iterdir()) == [MANIFEST_NAME, "summary.json"]
    # the same names without a run key are not proof: refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_text("{}")
    with pytest.raises(InvalidInput):
        plan_output_dir(other)


def test_a_file_or_a_dangling_link_is_refused(tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidInput, match="not a directory"):
        plan_output_dir(tmp_path / "f")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(InvalidInput, match="does not exist"):
        plan_output_dir(tmp_path / "dangling")
    with pytest.raises(InvalidInput, match="empty"):
        plan_output_dir("")


def test_the_manifest_is_deterministic(tmp_path) -> None:
    texts = []
    for attempt in range(2):
        target = tmp_path / f"run{attempt}"
        _write_run(target, {"summary.json": "same", "b/c.txt": "c"}, command="replay", run_key="k")
        texts.append((target / MANIFEST_NAME).read_bytes())
    assert texts[0] == texts[1]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_place_is_a_clean_error(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InvalidInput, match="cannot be written"):
            _write_run(locked / "run", {"summary.json": "1"})
    finally:
        locked.chmod(0o700)


def test_a_parent_that_is_a_file_is_a_clean_error(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput, match="cannot be written"):
        _write_run(tmp_path / "file" / "run", {"summary.json": "1"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
