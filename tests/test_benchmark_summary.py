"""benchmarks/summary.py: the table in docs/performance.md is the one generated from
benchmarks/results/*.json; every result JSON has a summary; results record how they were made."""

import json
import subprocess
import sys
import types

import pytest
from conftest import REPO_ROOT

from benchmarks import machine, summary


def test_the_committed_table_is_the_generated_one():
    text, start, end = summary.committed_section()
    assert text[start:end] == summary.section(), (
        "docs/performance.md's table differs from benchmarks/results/*.json: run "
        "python -m benchmarks.summary")


def test_check_fails_on_a_stale_table_and_names_the_fix(tmp_path, monkeypatch):
    page = tmp_path / "performance.md"
    stale = summary.section().replace("AMD EPYC", "Some Other CPU", 1)
    page.write_text(f"# Performance\n\n{stale}\n\nafter\n")
    monkeypatch.setattr(summary, "PAGE", page)
    assert summary.main(["--check"]) == 1
    assert summary.main([]) == 0  # rewrites the table, keeps the rest of the page
    assert page.read_text() == f"# Performance\n\n{summary.section()}\n\nafter\n"
    assert summary.main(["--check"]) == 0


def test_a_result_without_a_summary_or_a_page_without_markers_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "bench_new.json").write_text("{}")
    with pytest.raises(SystemExit, match="add 'bench_new' to SUMMARIES"):
        summary.table(tmp_path)
    page = tmp_path / "page.md"
    page.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no '<!-- summary:start -->'"):
        summary.committed_section(page)


def test_recorded_provenance_is_shown_and_missing_provenance_is_not_invented(tmp_path):
    result = json.loads((summary.RESULTS / "bench_metrics.json").read_text())
    result.pop("command", None), result.pop("commit", None)
    (tmp_path / "bench_metrics.json").write_text(json.dumps(result))
    assert summary.table(tmp_path).count(summary.NOT_RECORDED) == 2
    result.update(command="python -m benchmarks.bench_metrics --image=x.png", commit="abc1234")
    (tmp_path / "bench_metrics.json").write_text(json.dumps(result))
    row = summary.table(tmp_path).splitlines()[-1]
    assert "`abc1234`" in row and "`python -m benchmarks.bench_metrics --image=x.png`" in row
    assert summary.NOT_RECORDED not in row


def test_rows_of_several_runs_show_each_run(tmp_path):
    """bench_transforms and the reference scripts keep other models' rows of earlier runs: each
    row carries its run's provenance, and the table names every run, unrecorded ones included."""
    result = json.loads((summary.RESULTS / "reference_transforms.json").read_text())
    for row in result["rows"]:
        for key in ("command", "commit", "date"):
            row.pop(key, None)
    result["rows"][0].update(command="python benchmarks/reference_transforms.py --batch=2",
                             commit="abc1234")  # fmt: skip
    result["rows"][1].update(command="python benchmarks/reference_transforms.py", commit="def5678")
    (tmp_path / "reference_transforms.json").write_text(json.dumps(result))
    row = summary.table(tmp_path).splitlines()[-1]
    assert "`abc1234`<br>`def5678`<br>not recorded" in row
    assert ("`python benchmarks/reference_transforms.py --batch=2`<br>"
            "`python benchmarks/reference_transforms.py`<br>not recorded") in row


def test_a_benchmark_records_its_command_line_and_commit(monkeypatch):
    """What `python -m benchmarks.bench_train --steps=3` records: that command (as `python -m`
    sets `__main__.__spec__`), a script run from the checkout as its path, and the commit."""
    script = str(REPO_ROOT / "benchmarks" / "bench_train.py")
    monkeypatch.setitem(sys.modules, "__main__",
                        types.SimpleNamespace(__spec__=types.SimpleNamespace(
                            name="benchmarks.bench_train")))  # fmt: skip
    assert machine.command_line([script, "--steps=3", "--x=a b"]) == (
        "python -m benchmarks.bench_train --steps=3 '--x=a b'")
    monkeypatch.setitem(sys.modules, "__main__", types.SimpleNamespace(__spec__=None))
    reference = str(REPO_ROOT / "benchmarks" / "reference_compressai.py")
    assert machine.command_line([reference, "--codecs="]) == (
        "python benchmarks/reference_compressai.py --codecs=")
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False)  # fmt: skip
    recorded = machine.provenance([reference])
    if head.returncode == 0:  # a git checkout
        assert recorded["commit"].split("+")[0] == head.stdout.strip()
    else:
        assert recorded["commit"] == "unknown"
