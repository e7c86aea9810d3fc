"""The fast derivation engine (the same rules on pyoxigraph, batched) against the reference
(rdflib, one encounter at a time): identical output on every derive case, overlays included."""
import json
from collections import defaultdict

import pytest

from harness import case_files, engine, load_case
from reasoner.fastderive import FastDeriver
from reasoner.inputs import record_from_object
from reasoner.render import summarize_encounter


def _groups():
    groups = defaultdict(list)
    for p in case_files("derive"):
        groups[tuple(load_case(p).get("overlays", ()))].append(p)
    return sorted(groups.items())


@pytest.mark.parametrize("overlays,paths", _groups(), ids=lambda v: "+".join(v) if isinstance(v, tuple) else None)
def test_fast_equals_reference_on_every_case(overlays, paths):
    kb, deriver, _, _ = engine(overlays)
    fast = FastDeriver(kb)
    records = [record_from_object(load_case(p)["encounter"], "encounter", kb.content.context, file=p, index=i)
               for i, p in enumerate(paths)]
    batch = fast.derive_many(records)  # all cases of the group in one batch
    diffs = []
    for rec in records:
        ref = summarize_encounter(kb, rec, deriver.derive(rec.graph))
        got = summarize_encounter(kb, rec, batch[rec.node])
        if json.dumps(ref, sort_keys=True) != json.dumps(got, sort_keys=True):
            diffs.append(rec.id)
    assert not diffs, f"fast and reference engines differ on {diffs}"
    assert len(records) == len(paths)
