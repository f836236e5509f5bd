"""Cohen's kappa against known values, alignment by key, and the CLI flag under 0.8."""

from __future__ import annotations

from sftkit.cli import main
from sftkit.data.kappa import cohen_kappa
from tests.conftest import write_jsonl


def test_textbook_value():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> po 0.7, pe 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    r = cohen_kappa(a, b)
    assert r["observed_agreement"] == 0.7 and r["expected_agreement"] == 0.5 and r["kappa"] == 0.4
    assert r["per_label"]["yes"] == {"annotator_a": 25, "annotator_b": 30, "agreement": round(40 / 55, 4)}
    assert not r["acceptable"]


def test_perfect_and_chance_agreement():
    assert cohen_kappa([1, 2, 3, 1], [1, 2, 3, 1])["kappa"] == 1.0
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "a", "b"])["kappa"] == 0.0


def test_cli_aligns_by_key_and_flags_low_agreement(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": i, "meta": {"label": "好" if i % 2 else "差"}} for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": i, "meta": {"label": "好" if i % 2 else "差"}} for i in reversed(range(10))])
    assert main(["data", "kappa", str(a), str(b), "--field", "meta.label", "--key", "id", "--strict"]) == 0
    assert "1.0000  OK" in capsys.readouterr().out
    c = write_jsonl(tmp_path / "c.jsonl", [{"id": i, "meta": {"label": "好" if i < 5 else "差"}} for i in range(10)])
    assert main(["data", "kappa", str(a), str(c), "--field", "meta.label", "--key", "id", "--strict"]) == 1
    assert "LOW" in capsys.readouterr().out


def test_aligns_by_id_when_every_record_has_one(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": i, "label": "x" if i < 3 else "y"} for i in range(6)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": i, "label": "x" if i < 3 else "y"} for i in reversed(range(6))])
    assert main(["data", "kappa", str(a), str(b), "--field", "label", "--json"]) == 0
    assert '"kappa": 1.0' in capsys.readouterr().out
