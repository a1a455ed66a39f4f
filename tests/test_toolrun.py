"""hrdeploy.kit.toolrun with real child processes: a small Python program stands in for a vendor
tool (it starts a helper of its own, as model_deploy does, and records the signals it gets), so
the tests see what a user would: output in the log, a hung tool stopped at its timeout, and a
Ctrl-C or SIGTERM to hrdeploy reaching the whole tool, with nothing left running."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import hung_tool
from hung_tool import gone, signals, tool_pids
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.target import ConvertRequest
from hrdeploy.kit.toolrun import run_tool

#: the stand-in tool (``hung_tool.py MODE RECORD``): starts a helper, records the signals it
#: gets; "polite" exits on SIGINT/SIGTERM, "stubborn" only dies of SIGKILL
HUNG_TOOL = Path(hung_tool.__file__)

#: runs run_tool on the stand-in in a process of its own, so the test can signal "hrdeploy"
DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from hrdeploy.kit.toolrun import run_tool

    tool, mode, record, log = sys.argv[1:5]
    try:
        run_tool([sys.executable, tool, mode, record], step="fake atc", log=Path(log), grace=0.5)
    except KeyboardInterrupt:
        print("KeyboardInterrupt re-raised", flush=True)
        sys.exit(130)
""")


@pytest.fixture
def tool() -> Path:
    return HUNG_TOOL


def test_output_goes_to_the_log_and_to_the_caller(tmp_path):
    log = tmp_path / "logs" / "step.log"
    proc = run_tool([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                    step="tool", log=log)
    assert proc.returncode == 3
    assert proc.stdout.split() == ["out", "err"] and log.read_text() == proc.stdout


def test_append_keeps_earlier_commands_in_a_shared_log(tmp_path):
    log = tmp_path / "install.log"
    seen: list[str] = []
    for word in ("first", "second"):
        run_tool([sys.executable, "-c", f"print({word!r})"], step="pip", log=log, append=True, on_line=seen.append)
    text = log.read_text()
    assert text.index("first") < text.index("second") and text.count("\n$ ") == 2
    assert seen == ["first\n", "second\n"]


def test_a_missing_executable_is_a_toolchain_error(tmp_path):
    with pytest.raises(ToolchainMissing, match="cannot start atc: .*no-such-atc"):
        run_tool([str(tmp_path / "no-such-atc")], step="atc", tool_hint="source set_env.sh")


@pytest.mark.parametrize("mode", ["polite", "stubborn"])
def test_a_hung_tool_is_stopped_at_its_timeout_with_one_line(tool, tmp_path, mode):
    record, log = tmp_path / "record.txt", tmp_path / "atc_bs1.log"
    t0 = time.monotonic()
    with pytest.raises(UserError) as info:
        run_tool([sys.executable, str(tool), mode, str(record)], step="atc batch 1", log=log, timeout=2.0, grace=0.5)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("atc batch 1 did not finish within 2 s and was stopped; log: ")
    assert str(log) in message and "--step-timeout" in message
    tool_pid, helper_pid = tool_pids(record)
    assert gone(tool_pid, helper_pid, timeout=1.0), "the tool or its helper outlived the timeout"
    # SIGINT first (a tool's own clean-up); the stubborn one then got SIGTERM and was killed
    assert signals(record) == (["SIGINT"] if mode == "polite" else ["SIGINT", "SIGTERM"])
    assert "compiling" in log.read_text()
    assert time.monotonic() - t0 < 20


def interrupt_driver(tool: Path, tmp_path: Path, mode: str, sig: int) -> tuple[subprocess.Popen[str], str, str, Path, int, int]:
    """Run the stand-in tool in ``mode`` under a driver process (standing in for hrdeploy),
    send ``sig`` to the driver once the tool runs; returns the finished driver, its output,
    the tool's signal record and the tool's and its helper's pids."""
    record, log = tmp_path / "record.txt", tmp_path / "tool.log"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(driver), str(tool), mode, str(record), str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tool_pid, helper_pid = tool_pids(record)
        proc.send_signal(sig)  # to hrdeploy only: the tool is in a process group of its own
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, out, err, record, tool_pid, helper_pid


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_hrdeploy_is_forwarded_to_the_tool_and_waited_for(tool, tmp_path, sig):
    proc, out, err, record, tool_pid, helper_pid = interrupt_driver(tool, tmp_path, "polite", sig)
    assert proc.returncode == 130 and "KeyboardInterrupt re-raised" in out, (out, err)
    # the tool got a SIGINT, as Ctrl-C in a terminal would have given it, and ended on it
    assert signals(record) == ["SIGINT"]
    assert gone(tool_pid, helper_pid, timeout=1.0), "an orphan of the tool is still running"


def test_a_tool_that_ignores_sigint_and_sigterm_is_killed(tool, tmp_path):
    proc, out, err, record, tool_pid, helper_pid = interrupt_driver(tool, tmp_path, "stubborn", signal.SIGINT)
    assert proc.returncode == 130, (out, err)
    assert signals(record) == ["SIGINT", "SIGTERM"]
    assert gone(tool_pid, helper_pid, timeout=1.0)


def test_helpers_a_tool_leaves_behind_do_not_outlive_its_step(tmp_path):
    pid_file = tmp_path / "helper.pid"
    script = ("import subprocess, sys; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
              f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('done')")
    proc = run_tool([sys.executable, "-c", script], step="tool", timeout=60, grace=0.5)
    assert proc.returncode == 0 and proc.stdout == "done\n"
    assert gone(int(pid_file.read_text()), timeout=1.0)


def test_convert_request_run_applies_its_step_timeout(tool, tmp_path):
    from hrdeploy.model import InputSpec

    request = ConvertRequest(onnx_path=tmp_path / "m.onnx", out_dir=tmp_path, model="m", variant="v",
                             task="classification", input=InputSpec(), preprocess={}, step_timeout=1.0)
    with pytest.raises(UserError, match=r"^atc bs8 did not finish within 1 s and was stopped; log: .*bs8\.log"):
        request.run([sys.executable, str(tool), "polite", str(tmp_path / "record.txt")], log=tmp_path / "bs8.log",
                    step="atc bs8")
    entry = request.commands[-1]
    assert entry["log"] == str(tmp_path / "bs8.log") and "returncode" not in entry
    assert gone(*tool_pids(tmp_path / "record.txt"), timeout=1.0)
