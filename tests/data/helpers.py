"""Run the pipeline on in-memory rows and return records, rejects and the report."""

from __future__ import annotations

from sftkit.data.pipeline import ConvertOptions, Report, iter_converted, sources_from_paths
from tests.conftest import write_jsonl


def run(tmp_path, rows, name="data.jsonl", **opts):
    """Convert ``rows`` written as JSONL; return (records, rejects, report)."""
    path = write_jsonl(tmp_path / name, rows)
    options = ConvertOptions(**opts)
    report = Report()
    records, rejects = [], []
    for _, recs, rej in iter_converted(sources_from_paths([path], options), options, report):
        if recs is not None:
            records.extend(recs)
        else:
            rejects.append(rej)
    return records, rejects, report


def one(tmp_path, row, **opts):
    """Convert one row that must succeed; return (record, file report)."""
    records, rejects, report = run(tmp_path, [row], **opts)
    assert not rejects, rejects
    assert len(records) == 1, records
    return records[0], report.files[0]


def reject(tmp_path, row, **opts):
    """Convert one row that must be rejected; return the reject entry."""
    records, rejects, _ = run(tmp_path, [row], **opts)
    assert not records, records
    assert len(rejects) == 1
    return rejects[0]
