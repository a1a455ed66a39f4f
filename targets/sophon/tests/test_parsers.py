"""Parsers against real tool outputs: the shared fixtures (tests/fixtures/toolchains) and the
TPU-MLIR outputs recorded here in data/ (a failed compare, model_tool --info)."""
from __future__ import annotations

from pathlib import Path

import pytest

from hrdeploy_target_sophon.parsers import (bmrt_rows, chip_family, describe_failure, parse_bm_smi,
                                            parse_bmrt_test, parse_calibration_table, parse_model_info,
                                            parse_npz_compares, strip_ansi)

DATA = Path(__file__).resolve().parent / "data"


def read(fixtures_dir: Path, name: str) -> str:
    return (fixtures_dir / "toolchains" / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("board,chip", [("1684X-SC7", "bm1684x"), ("1684-SC5+", "bm1684"), ("1684X-SE7", "bm1684x"),
                                        ("1684-SE5", "bm1684"), ("BM1684X-EVB", "bm1684x"), ("MARS3-SOC", None),
                                        ("", None), (None, None)])
def test_chip_family(board: str | None, chip: str | None) -> None:
    assert chip_family(board) == chip


def test_bm_smi_text_format(fixtures_dir: Path) -> None:
    devs = parse_bm_smi(read(fixtures_dir, "bm-smi_text_format_SC5plus_3chips.txt"))
    assert [d["id"] for d in devs] == [0, 1, 2]
    assert {d["board"] for d in devs} == {"1684-SC5+"} and {d["chip"] for d in devs} == {"bm1684"}
    assert devs[1]["bus_id"] == "000:01:00.1" and devs[1]["status"] == "Active"
    assert devs[0]["memory_used_mb"] == 0 and devs[0]["memory_total_mb"] == 7086
    assert devs[2]["chip_temp"] == "53C" and devs[0]["util"] == "0%" and devs[2]["power"] == "1W"


def test_bm_smi_display_table(fixtures_dir: Path) -> None:
    devs = parse_bm_smi(read(fixtures_dir, "bm-smi_display_noloop_MARS3-SOC.txt"))
    assert len(devs) == 1
    d = devs[0]
    assert (d["id"], d["card"], d["board"], d["mode"]) == (0, 0, "MARS3-SOC", "SOC")
    assert d["chip"] is None  # not a BM1684/BM1684X board: convert then asks for --chip
    assert d["status"] == "Active" and d["util"] == "11%"
    assert (d["memory_used_mb"], d["memory_total_mb"]) == (4, 75)
    assert d["sdk_version"] == "0.4.9" and d["driver_version"] == "0.4.9"


def test_bm_smi_display_with_escapes_and_pcie_board(fixtures_dir: Path) -> None:
    """The curses screen wrapped in escapes, with a BM1684X card in place of the SoC row."""
    text = read(fixtures_dir, "bm-smi_display_noloop_MARS3-SOC.txt").replace("MARS3-SOC   SOC ", "1684X-SC7   PCIE")
    devs = parse_bm_smi("\x1b[?1049h\x1b[1;1H" + text.replace("\n", "\x1b[K\n") + "\x1b[?1049l")
    assert [(d["board"], d["mode"], d["chip"]) for d in devs] == [("1684X-SC7", "PCIE", "bm1684x")]


def test_bm_smi_nothing_parseable() -> None:
    assert parse_bm_smi("bm-smi: no sophon device found\n") == []


def test_bmrt_test_yolov5s_int8(fixtures_dir: Path) -> None:
    p = parse_bmrt_test(read(fixtures_dir, "bmrt_test_yolov5s_bm1684x_int8.txt"))
    assert p["net"] == "yolov5s" and p["batch"] == 1
    assert p["inputs"] == [{"index": 0, "name": "images", "shape": [1, 3, 640, 640], "dtype": "FLOAT32"}]
    assert p["launches"] == [{"net": "yolov5s", "stage": 0, "total_us": 4122, "npu_us": 4009, "cpu_us": 113}]
    assert p["times_s"] == {"load_input": 0.008914, "calculate": 0.004132, "get_output": 0.012603, "compare": 0.006514}
    (row,) = bmrt_rows(p)
    assert row["batch"] == 1 and row["latency_ms"] == 4.122 and row["npu_ms"] == 4.009
    assert row["device_ips"] == pytest.approx(1000 / 4.122, rel=1e-4)
    assert row["calculate_ms"] == 4.132 and row["source"] == "bmrt_test"


def test_bmrt_test_vgg16_batch4(fixtures_dir: Path) -> None:
    p = parse_bmrt_test(read(fixtures_dir, "bmrt_test_vgg16_batch4_libsophon_doc.txt"))
    assert p["batch"] == 4 and len(p["output_shapes"]) == 3 and p["output_shapes"][0] == [4, 32, 120, 68]
    assert p["launches"][0]["cpu_us"] == 101
    (row,) = bmrt_rows(p)
    assert row["batch"] == 4 and row["latency_ms"] == 19.59
    assert row["per_image_ms"] == pytest.approx(19.59 / 4, abs=1e-4)
    assert row["device_ips"] == pytest.approx(4000 / 19.59, rel=1e-4)


def test_bmrt_test_newer_runtime(fixtures_dir: Path) -> None:
    p = parse_bmrt_test(read(fixtures_dir, "bmrt_test_resnet50_newer_runtime.txt"))
    assert p["net"] == "resnet50-v2" and p["batch"] == 1 and p["compare"] is True
    assert p["launches"][0] == {"net": "resnet50-v2", "stage": 0, "total_us": 6996, "npu_us": 6801, "cpu_us": 195}
    assert p["times_s"]["pre_alloc"] == 0.000974 and p["times_s"]["calculate"] == 0.006998
    (row,) = bmrt_rows(p)
    assert row["bmrt_compare"] == "passed" and row["latency_ms"] == 6.996


def test_bmrt_rows_average_over_loops(fixtures_dir: Path) -> None:
    """--loopnum repeats the launch line; the row is the mean of the loops."""
    text = read(fixtures_dir, "bmrt_test_resnet50_newer_runtime.txt")
    launch = text.splitlines()[0]
    looped = "\n".join([launch, launch.replace("6996 us (npu 6801", "7004 us (npu 6811")]) + "\n" + text
    (row,) = bmrt_rows(parse_bmrt_test(looped))
    assert row["loops"] == 3 and row["latency_ms"] == pytest.approx((6996 * 2 + 7004) / 3 / 1000, abs=1e-4)


def test_npz_compare_model_transform(fixtures_dir: Path) -> None:
    (b,) = parse_npz_compares(read(fixtures_dir, "tpu_mlir_1.30.2_model_transform_tiny.log"))
    assert b["target"] == "tiny_top_outputs.npz" and b["reference"] == "tiny_ref_outputs.npz"
    assert b["tolerance"] == "0.99,0.99" and b["passed"] is True
    assert [t["name"] for t in b["tensors"]][-1] == "logits_Gemm" and len(b["tensors"]) == 6
    relu = b["tensors"][0]
    assert relu["verdict"] == "SIMILAR" and relu["cosine"] == 1.0 and relu["sqnr"] == pytest.approx(138.083858)
    assert b["min_similarity"]["cosine"] == pytest.approx(0.9999998807907104)


def test_npz_compare_model_deploy_pass(fixtures_dir: Path) -> None:
    (b,) = parse_npz_compares(read(fixtures_dir, "tpu_mlir_1.30.2_model_deploy_npz_compare_pass.txt"))
    assert b["passed"] is True and b["tolerance"] == "0.99,0.90"
    assert b["tensors"] == [{"name": "logits_Gemm", "verdict": "CLOSE", "passed": True, "close_order": 3.0}]
    assert b["min_similarity"]["sqnr"] == float("inf")


def test_npz_compare_failed_names_tensor_and_figures() -> None:
    text = (DATA / "tpu_mlir_1.30.2_model_deploy_npz_compare_failed.txt").read_text()
    (b,) = parse_npz_compares(text)
    assert b["passed"] is False
    (t,) = b["tensors"]
    assert (t["name"], t["verdict"], t["passed"]) == ("logits_Gemm", "NOT_SIMLIAR", False)
    assert t["cosine"] == pytest.approx(0.999983) and t["euclidean"] == pytest.approx(0.991461)
    line = describe_failure(b)
    assert "logits_Gemm not similar" in line and "cosine 0.999983" in line and "euclidean 0.991461" in line
    assert "0.99999,0.9999" in line and "\n" not in line


def test_calibration_table(fixtures_dir: Path) -> None:
    t = parse_calibration_table(read(fixtures_dir, "tpu_mlir_1.30.2_calibration_table.txt"))
    assert t["version"] == "1.30.2" and t["samples"] == 8 and t["method"] == "['kl']"
    assert len(t["ops"]) == 7
    assert t["ops"]["image"] == {"threshold": 4.7272506, "min": -4.8521175, "max": 4.8025289}
    assert t["ops"]["logits_Gemm"]["threshold"] == pytest.approx(0.2453554)


def test_model_tool_info_two_stages() -> None:
    info = parse_model_info((DATA / "tpu_mlir_1.30.2_model_tool_info_2stages.txt").read_text())
    assert info["chip"] == "bm1684x"
    (net,) = info["nets"]
    assert net["name"] == "tiny_t32" and net["mode"] == "static"
    assert [s["inputs"][0]["shape"] for s in net["stages"]] == [[2, 3, 32, 32], [1, 3, 32, 32]]
    assert net["stages"][1]["outputs"][0] == {"name": "logits_Gemm", "dtype": "float32", "shape": [1, 10]}


def test_strip_ansi_keeps_last_redraw() -> None:
    assert strip_ansi("\x1b[1mbold\x1b[0m\n 10%|#  \r 100%|###| done") == "bold\n 100%|###| done"


def test_failure_line_skips_the_progress_bar_of_a_crashed_tool() -> None:
    """model_transform whose top-MLIR check crashed (TPU-MLIR 1.30.2, MatMul of a 2-D weight by
    a batched tensor; recorded here): the log ends in progress-bar frames, which told the user
    nothing; the failure line names the command that died instead."""
    from hrdeploy_target_sophon.conversion import _last_line

    log = ("2026/12/01 11:05:10 - INFO : Mlir file generated:mm.mlir\n"
           "[CMD]: model_runner.py --input mm_in_f32.npz --model mm.onnx --output mm_ref_outputs.npz  \n"
           "2026/12/01 11:05:10 - INFO : Saving mm_ref_outputs.npz\n"
           "[CMD]: model_runner.py --input mm_in_f32.npz --model mm.mlir --output mm_top.npz  \n"
           "[" + " " * 50 + "] 0%\r[#" + " " * 49 + "] 2%\r3%4%#" + " " * 48 + "] 4%\r91%")
    assert _last_line(log) == "[CMD]: model_runner.py --input mm_in_f32.npz --model mm.mlir --output mm_top.npz"
    # a line that only mentions a percentage is still a message
    assert _last_line("loss at 50% of the run: out of memory\n[###   ] 60%") == "loss at 50% of the run: out of memory"
