"""Cohen's kappa against known values, alignment by key, and the CLI flag under 0.8."""

from __future__ import annotations

import json

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


def test_kappa_is_undefined_not_ok_with_one_record_or_one_shared_label(tmp_path, capsys):
    # sklearn.metrics.cohen_kappa_score gives nan for both cases (0/0): there is no agreement beyond chance to measure
    assert cohen_kappa(["x"], ["x"])["kappa"] is None
    same = cohen_kappa(["x"] * 5, ["x"] * 5)
    assert same["kappa"] is None and "same label" in same["undefined"] and not same["acceptable"]
    # different single labels: po 0, pe 0 -> kappa 0 is defined
    assert cohen_kappa(["x", "x"], ["y", "y"])["kappa"] == 0.0
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": i, "label": "x" if i % 2 else "y"} for i in range(4)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": i + 3, "label": "x"} for i in range(4)])
    assert main(["data", "kappa", str(a), str(b), "--field", "label", "--key", "id", "--strict"]) == 1
    out = capsys.readouterr().out
    assert "undefined: only 1 record" in out and "OK" not in out
    assert main(["data", "kappa", str(a), str(b), "--field", "label", "--key", "id", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["kappa"] is None and r["acceptable"] is False and r["n"] == 1


def test_report_says_how_records_were_aligned(tmp_path, capsys):
    with_ids = write_jsonl(tmp_path / "ids.jsonl", [{"id": i, "label": "x" if i % 2 else "y"} for i in range(4)])
    no_ids = write_jsonl(tmp_path / "pos.jsonl", [{"label": "x" if i % 2 else "y"} for i in range(4)])
    main(["data", "kappa", str(with_ids), str(with_ids), "--field", "label"])
    assert "aligned by field 'id', found in every record of both files (no --key given)" in capsys.readouterr().out
    main(["data", "kappa", str(no_ids), str(no_ids), "--field", "label"])
    assert "aligned by record position" in capsys.readouterr().out


def test_nothing_to_compare_names_files_field_and_the_side_that_lacks_it(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": i, "label": "x" if i % 2 else "y"} for i in range(4)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": i, "label": "x"} for i in range(4)])
    nokey = write_jsonl(tmp_path / "nokey.jsonl", [{"label": "x"} for i in range(4)])
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bin.jsonl").write_bytes(bytes(range(256)) * 4)

    def error(*args):
        assert main(["data", "kappa", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err and "no records carry labels from both annotators" in err
        return err

    err = error(str(a), str(b), "--field", "nope", "--key", "id")
    assert "field 'nope'" in err and "a.jsonl: none of its 4" in err and "b.jsonl: none of its 4" in err
    err = error(str(a), str(b), "--field", "label", "--key", "nope")
    assert "key in field 'nope'" in err and "a.jsonl" in err and "b.jsonl" in err
    err = error(str(a), str(nokey), "--field", "label", "--key", "id")
    assert "nokey.jsonl: none of its 4 record(s) is usable (4 x no key in field 'id'" in err and "a.jsonl:" not in err
    assert "empty.jsonl has no records" in error(str(tmp_path / "empty.jsonl"), str(a), "--field", "label")
    err = error(str(a), str(tmp_path / "bin.jsonl"), "--field", "label")
    assert "bin.jsonl: none of its" in err and "invalid UTF-8" in err
