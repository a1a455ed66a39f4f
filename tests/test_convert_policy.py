"""One parity policy for every target: a toolchain's own verdicts are recorded; hrdeploy's
tolerance decides unless the user makes the toolchain's verdict decisive."""
from __future__ import annotations

from hrdeploy.conversion import judge_toolchain


def _checks(*passed):
    return [{"tool": "t", "passed": p, "text": f"check {i} {'PASSED' if p else 'FAILED'}"} for i, p in enumerate(passed)]


def test_a_failed_toolchain_verdict_is_recorded_and_decides_nothing_by_default():
    parity = judge_toolchain({"status": "passed", "passed": True}, _checks(True, False, None), "record")
    assert parity["status"] == "passed"
    assert parity["toolchain"] == {"verdicts": 2, "passed": False, "failed": ["check 1 FAILED"], "decisive": False}


def test_decide_turns_a_failed_toolchain_verdict_into_a_breach():
    parity = judge_toolchain({"status": "passed", "passed": True}, _checks(True, False), "decide")
    assert parity["status"] == "failed" and parity["toolchain"]["decisive"] is True


def test_passing_or_absent_verdicts_leave_the_status_alone():
    assert judge_toolchain({"status": "failed"}, _checks(True), "decide")["status"] == "failed"
    assert judge_toolchain({"status": "passed"}, [], "decide")["toolchain"]["passed"] is None
    assert judge_toolchain({"status": "not run"}, _checks(False), "decide")["status"] == "not run"


def test_an_unknown_policy_is_a_user_error(run_cli, tmp_path):
    res = run_cli("convert", tmp_path / "m.onnx", "-o", tmp_path / "a", "--toolchain-verdict", "maybe")
    assert res.code == 2 and "unknown toolchain verdict policy 'maybe'" in res.err
