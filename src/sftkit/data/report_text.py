"""Human-readable text for data reports (the CLI prints these; ``--json`` prints the dicts instead)."""

from __future__ import annotations

from sftkit.data.pipeline import Report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def check_text(report: Report, show_errors: int = 10) -> str:
    """Per-file accounting, warnings by kind and the first errors with line and reason."""
    lines = []
    for f in report.files:
        how = "detected" if f.detected else "given"
        lines.append(f"{f.source}")
        lines.append(f"  format: {f.format or '-'} ({how})"
                     + "".join(f", {k} {v} records" for k, v in f.other_formats.most_common()))
        lines.append(f"  records read {f.read} = valid {f.converted + f.duplicates} + invalid {f.rejected - f.duplicates}"
                     f"   validation rate {_pct(f.validation_rate)}")
        if f.duplicates:
            lines.append(f"  duplicates removed: {f.duplicates}")
        if f.sampled_out:
            lines.append(f"  not selected by num_samples/split: {f.sampled_out}")
        if f.warnings:
            lines.append("  warnings: " + ", ".join(f"{k} {v}" for k, v in f.warnings.most_common()))
        if f.repairs:
            lines.append("  repairs: " + ", ".join(f"{k} {v}" for k, v in f.repairs.most_common()))
        if f.errors:
            lines.append("  first errors:")
            for e in f.errors[:show_errors]:
                loc = f"line {e['line']}" if e["line"] is not None else f"row {e['index']}"
                fld = f" field {e['field']!r}:" if e["field"] else ""
                lines.append(f"    {loc} (index {e['index']}){fld} {e['reason']}")
    t = report.to_dict()
    lines.append(f"total: read {t['read']} = converted {t['converted']} + rejected {t['rejected']}"
                 f"   valid {t['valid']}, invalid {t['invalid']}, validation rate {_pct(t['validation_rate'])}")
    return "\n".join(lines)


def _row(name: str, s: dict) -> str:
    return f"  {name:<22}{s['min']:>10}{s['median']:>10}{s['p95']:>10}{s['max']:>10}{s['mean']:>12}"


def stats_text(q: dict, report: Report) -> str:
    """The quality report as aligned tables."""
    t = report.to_dict()
    out = [f"records: {q['records']}  ({', '.join(f'{k} {v}' for k, v in q['kinds'].items())})",
           f"schema validation rate: {_pct(t['validation_rate'])}  (read {t['read']}, invalid {t['invalid']})",
           "", f"  {'':<22}{'min':>10}{'median':>10}{'p95':>10}{'max':>10}{'mean':>12}",
           _row("turns/conversation", q["turns_per_conversation"])]
    out += [_row(f"chars: {k}", v) for k, v in q["chars"].items()]
    if q["tokens"]:
        out += [_row(f"tokens: {k}", v) for k, v in q["tokens"].items()]
    d = q["duplicates"]
    out += ["", f"duplicates: exact {d['exact']}, near {d['near']}"]
    for mode in ("exact", "near"):
        for ex in d["examples"][mode]:
            out.append(f"  {mode}: {ex['where']} repeats {ex['duplicate_of']}: {ex['text']}")
    noise = q["noise"]["counts"]
    out += ["", "noise flags: " + (", ".join(f"{k} {v}" for k, v in sorted(noise.items())) or "none")]
    for flag, exs in sorted(q["noise"]["examples"].items()):
        for ex in exs[:2]:
            out.append(f"  {flag}: {ex['where']}: {ex['reply']}")
    out += ["", "languages: " + ", ".join(f"{k} {v['count']} ({_pct(v['share'])})" for k, v in q["languages"].items())]
    return "\n".join(out)


def mix_text(r: dict) -> str:
    """Realized proportions of a mix, and what had to be resampled."""
    out = [f"mixed {r['size']} records (seed {r['seed']}, by {r['mode']})"]
    for title, key in (("by source", "by_source"), ("by category", "by_category")):
        out.append(f"  {title}: " + ", ".join(f"{k} {v['count']} ({_pct(v['share'])})" for k, v in r[key].items()))
    for k, v in r["resampled"].items():
        out.append(f"  {k}: needed {v['needed']} but had {v['available']}; drew {v['drawn_with_replacement']} "
                   "with replacement")
    c = r["conversion"]
    out.append(f"  sources: read {c['read']} = converted {c['converted']} + rejected {c['rejected']}"
               + (f" (rejects in {r['rejects_path']})" if r.get("rejects_path") else ""))
    return "\n".join(out)


def kappa_text(r: dict) -> str:
    """Kappa, agreement and a flag when it is under the threshold."""
    verdict = "OK" if r["acceptable"] else f"LOW (under {r['threshold']}: tighten the guideline and re-annotate)"
    value = f"{r['kappa']:.4f}  {verdict}" if r["kappa"] is not None else f"undefined: {r['undefined']}"
    out = [f"Cohen's kappa on {r['field']!r}: {value}",
           f"  records compared: {r['n']} (aligned by {r.get('alignment', r['aligned_by'])}), unmatched {r['unmatched']}, "
           f"skipped {len(r['skipped']['a'])} + {len(r['skipped']['b'])}",
           f"  observed agreement {r['observed_agreement']:.4f}, expected by chance {r['expected_agreement']:.4f}",
           "  per label (A count, B count, agreement):"]
    for label, v in r["per_label"].items():
        out.append(f"    {label:<20}{v['annotator_a']:>6}{v['annotator_b']:>6}   {v['agreement']:.4f}")
    return "\n".join(out)
