"""Data-driven cases: every file under tests/cases/derive and tests/cases/validate is a test.

The folder is the manifest. A guard asserts that every case file on disk was collected and that
the suite has not shrunk below its floor. Every derivation is also turned back into a claim and
validated: a correct coding must produce no finding (false alarms are defects too).
"""
import pytest

from harness import (case_files, check_derive, check_validate, derive_case, engine, load_case,
                     validate_case)

DERIVE = case_files("derive")
VALIDATE = case_files("validate")
DERIVE_FLOOR = 40
VALIDATE_FLOOR = 25


def _param(path):
    case = load_case(path)
    marks = []
    if case.get("xfail"):
        marks.append(pytest.mark.xfail(reason=case["xfail"], strict=True))
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("path", [_param(p) for p in DERIVE])
def test_derive_case(path):
    case, summary, _ = derive_case(path)
    check_derive(case, summary)


@pytest.mark.parametrize("path", [_param(p) for p in VALIDATE])
def test_validate_case(path):
    case, findings = validate_case(path)
    check_validate(case, findings)


@pytest.mark.parametrize("path", [_param(p) for p in DERIVE])
def test_derived_claim_validates_clean(path):
    """The codes derive reports, billed as a claim, break no rule."""
    from reasoner.inputs import record_from_object

    case, summary, _ = derive_case(path)
    if not summary["codes"]:
        pytest.skip("nothing reported")
    enc = case["encounter"]
    claim = {
        "id": f"claim-{enc['id']}", "dateOfService": enc["dateOfService"],
        "placeOfService": enc["placeOfService"], "claimType": enc["claimType"],
        "lines": [{"code": c["code"], "units": c["units"], "modifiers": c["modifiers"]} for c in summary["codes"]],
    }
    kb, _, validator, _ = engine(tuple(case.get("overlays", ())))
    rec = record_from_object(claim, "claim", kb.content.context, file=path)
    findings, _ = validator.validate([rec])
    bad = [f for f in findings if f["severity"] in ("violation", "warning")]
    assert not bad, "derived codes break rules:\n  " + "\n  ".join(f"{f['code']} [{f['shape']}] {f['message']}" for f in bad)


def test_every_case_file_is_collected(request):
    """Guard against a suite that silently shrinks (a filter left in a loop, a bad glob)."""
    on_disk = {p.stem for area in ("derive", "validate") for p in case_files(area)}
    collected = {item.callspec.params["path"].stem for item in request.session.items
                 if hasattr(item, "callspec") and "path" in item.callspec.params}
    if request.config.getoption("-k") or request.config.args != ["tests"] and len(collected) < len(on_disk):
        pytest.skip("a subset of the suite was selected")
    assert on_disk <= collected, f"case files not collected: {sorted(on_disk - collected)}"
    assert len(DERIVE) >= DERIVE_FLOOR, f"only {len(DERIVE)} derive cases (floor {DERIVE_FLOOR})"
    assert len(VALIDATE) >= VALIDATE_FLOOR, f"only {len(VALIDATE)} validate cases (floor {VALIDATE_FLOOR})"
