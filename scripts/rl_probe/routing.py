"""The ticket-routing task of the probe: the same generator `sftkit demo rl` ships (``sftkit.demo_tasks``)."""

from __future__ import annotations

from sftkit.demo_tasks import SLIP_TEAM, SLIP_TO, make_data, make_split, record, ticket, write  # noqa: F401

if __name__ == "__main__":
    d = make_data(0)
    for r in d["train"][:6]:
        print(repr(r["messages"][0]["content"]), "->", r["messages"][1]["content"], r["meta"])
    print(sum(r["meta"]["slipped"] for r in d["train"]), "slipped demonstrations of", len(d["train"]))
