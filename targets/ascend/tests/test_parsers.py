"""Parsers on every recorded Ascend tool output in tests/fixtures/toolchains/."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hrdeploy_target_ascend.parsers import (bench_row, choose_chip, parse_ais_bench_output, parse_atc_output,
                                            parse_npu_smi_info, parse_version_info)


def read(fixtures_dir: Path, name: str) -> str:
    return (fixtures_dir / "toolchains" / name).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ npu-smi
def test_npu_smi_310p3_two_cards_without_header(fixtures_dir: Path) -> None:
    info = parse_npu_smi_info(read(fixtures_dir, "npu-smi_info_310P3_2cards_noheader.txt"))
    assert info.tool_version is None
    assert [(c.npu, c.chip, c.device, c.name, c.health) for c in info.chips] == [
        (0, 0, 0, "310P3", "OK"), (1, 0, 1, "310P3", "OK")]
    assert {c.soc for c in info.chips} == {"Ascend310P3"}
    assert [c.bus_id for c in info.chips] == ["0000:82:00.0", "0000:89:00.0"]
    assert (info.chips[0].memory_used_mb, info.chips[0].memory_total_mb) == (1074, 21534)
    assert info.chips[1].power_w == 15.4 and info.chips[1].temp_c == 43


def test_npu_smi_310p3_one_card_with_banner(fixtures_dir: Path) -> None:
    info = parse_npu_smi_info(read(fixtures_dir, "npu-smi_info_310P3_1card.txt"))
    assert (info.tool_version, info.driver_version) == ("22.0.0", "22.0.3")
    assert len(info.chips) == 1
    c = info.chips[0]
    assert (c.npu, c.chip, c.device, c.soc, c.bus_id) == (0, 0, 0, "Ascend310P3", "0000:86:00.0")
    assert (c.memory_used_mb, c.memory_total_mb) == (3292, 21527)


def test_npu_smi_310_four_chips_behind_one_npu(fixtures_dir: Path) -> None:
    info = parse_npu_smi_info(read(fixtures_dir, "npu-smi_info_310_4chips_1card.txt"))
    assert info.driver_version == "21.0.4.B030"
    assert [(c.npu, c.chip, c.device) for c in info.chips] == [(6, 0, 3), (6, 1, 4), (6, 2, 5), (6, 3, 6)]
    assert {c.soc for c in info.chips} == {"Ascend310"}
    # the Device column, not the NPU id, is what --device takes
    assert choose_chip(info, 5).bus_id == "0000:8B:00.0"
    assert choose_chip(info, 0) is None
    assert choose_chip(info).device == 3


def test_npu_smi_mapping_view_310(fixtures_dir: Path) -> None:
    info = parse_npu_smi_info(read(fixtures_dir, "npu-smi_info_-m_310_4chips_1card.txt"))
    # the Mcu row (logic id "-") is not a chip
    assert [(c.npu, c.chip, c.device, c.name) for c in info.chips] == [
        (6, 0, 0, "MiniD"), (6, 1, 1, "MiniD"), (6, 2, 2, "MiniD"), (6, 3, 3, "MiniD")]
    assert {c.soc for c in info.chips} == {"Ascend310"}


def test_npu_smi_910a_training_layout(fixtures_dir: Path) -> None:
    info = parse_npu_smi_info(read(fixtures_dir, "npu-smi_info_910A_8npu.txt"))
    assert info.tool_version == "22.0.3.1"
    assert len(info.chips) == 8
    # no Device column: logical ids are the chips' order (what `-m` lists for the same card type)
    assert [c.device for c in info.chips] == list(range(8))
    assert [c.npu for c in info.chips] == list(range(8))
    assert {c.soc for c in info.chips} == {"Ascend910A"}
    assert (info.chips[3].power_w, info.chips[3].bus_id) == (191.7, "0000:3E:00.0")
    assert (info.chips[0].hbm_used_mb, info.chips[0].hbm_total_mb) == (0, 32768)
    assert (info.chips[0].memory_used_mb, info.chips[0].memory_total_mb) == (1867, 15077)


def test_npu_smi_mapping_view_910a(fixtures_dir: Path) -> None:
    info = parse_npu_smi_info(read(fixtures_dir, "npu-smi_info_-m_910A_8npu.txt"))
    assert [c.device for c in info.chips] == list(range(8))
    assert {c.name for c in info.chips} == {"Ascend 910A"}
    assert {c.soc for c in info.chips} == {"Ascend910A"}


def test_npu_smi_910_with_process_table(fixtures_dir: Path) -> None:
    info = parse_npu_smi_info(read(fixtures_dir, "npu-smi_info_910_24.1.RC2_with_processes.txt"))
    assert info.tool_version == "24.1.RC2" and len(info.chips) == 8
    assert [c.npu for c in info.chips if c.health == "Warning"] == [3, 7]
    # the vendor doc redacted the chip name: no soc can be derived from it
    assert {c.soc for c in info.chips} == {None}
    assert choose_chip(info) is None
    assert len(info.processes) == 32
    assert info.processes[0] == {"npu": 0, "chip": 0, "pid": 37656, "name": "hlt_host_devmm_", "memory_mb": 686}
    assert {p["npu"] for p in info.processes} == set(range(8))


# ------------------------------------------------------------------------------------------ ais_bench
def test_ais_bench_msit_pure_inference(fixtures_dir: Path) -> None:
    rep = parse_ais_bench_output(read(fixtures_dir, "ais_bench_msit_benchmark_pure_infer_resnet50_bs1.txt"))
    assert rep.guessed_batchsize == 1
    assert len(rep.summaries) == 1
    s = rep.summaries[0]
    assert s.npu_compute_time["mean"] == pytest.approx(2.4560000896453857)
    assert s.npu_compute_time["p99"] == pytest.approx(2.4560000896453857)
    assert s.throughput == pytest.approx(407.16610891670894) and s.batchsize == 1
    assert s.h2d_latency == {} and s.d2h_latency == {}
    row = bench_row(1, text_summary=s)
    assert row["device_ips"] == pytest.approx(s.throughput, rel=1e-9)
    assert row["latency_ms"]["p50"] == pytest.approx(2.4560000896453857)


def test_ais_bench_display_all_summary(fixtures_dir: Path) -> None:
    s = parse_ais_bench_output(read(fixtures_dir, "ais_bench_display_all_summary.txt")).summaries[0]
    assert s.h2d_latency["mean"] == pytest.approx(0.05700000002980232)
    assert s.d2h_latency["median"] == pytest.approx(0.014999999664723873)
    assert s.npu_compute_time["min"] == pytest.approx(0.6650000214576721)
    assert s.throughput == pytest.approx(1503.759349974173)
    row = bench_row(1, text_summary=s)
    assert row["h2d_ms"] == pytest.approx(0.057000000029802) and row["d2h_ms"] == pytest.approx(0.0149999996647)
    assert row["device_ips"] == pytest.approx(1503.759349974173, rel=1e-9)


def test_ais_bench_multi_device(fixtures_dir: Path) -> None:
    rep = parse_ais_bench_output(read(fixtures_dir, "ais_bench_multi_device.txt"))
    assert len(rep.summaries) == 2
    assert [s.throughput for s in rep.summaries] == pytest.approx([281.38893494131406, 276.54867008654026])
    assert [(d["index"], d["device"]) for d in rep.devices] == [(0, 1), (1, 2)]
    assert rep.devices[0]["throughput"] == pytest.approx(281.38893494131406)
    assert rep.devices[1]["end_time"] == pytest.approx(1676875630.8326817)
    assert rep.summary_throughput == pytest.approx(557.9376050278543)
    assert rep.summary_throughput == pytest.approx(sum(d["throughput"] for d in rep.devices))


def test_ais_bench_older_throughput_line(fixtures_dir: Path) -> None:
    s = parse_ais_bench_output(read(fixtures_dir, "ais_bench_legacy_ais_infer_bs1024.txt")).summaries[0]
    assert s.batchsize == 1024 and s.throughput == pytest.approx(2000.589583819924)
    assert s.npu_compute_time["p99"] == pytest.approx(516.9628411865235)
    row = bench_row(1024, text_summary=s)
    assert row["device_ips"] == pytest.approx(2000.589583819924, rel=1e-9)
    assert row["latency_ms"]["mean"] == pytest.approx(511.8491110229492)


def test_ais_bench_oldest_ais_infer_line(fixtures_dir: Path) -> None:
    rep = parse_ais_bench_output(read(fixtures_dir, "ais_bench_legacy_ais_infer_old_throughput_format.txt"))
    assert len(rep.summaries) == 1
    s = rep.summaries[0]
    assert s.throughput == pytest.approx(171.5691219234638) and s.batchsize is None
    assert s.npu_compute_time["mean"] == pytest.approx(5.828554630279541)
    assert bench_row(1, text_summary=s)["device_ips"] == pytest.approx(171.5691219234638, rel=1e-9)


def test_ais_bench_table_form_and_capital_throughput() -> None:
    # the layout of ais_bench builds that print the statistics with tabulate (summary.py display())
    text = "\n".join([
        "[INFO] -----------------Performance Summary------------------",
        "╒═══════════════════════╤═════════╤═════════╤═════════╤══════════╤═════════╕",
        "│ Metric                │     min │     max │    mean │   median │     P99 │",
        "╞═══════════════════════╪═════════╪═════════╪═════════╪══════════╪═════════╡",
        "│ NPU_compute_time (ms) │  2.4000 │  2.6000 │  2.5000 │   2.5000 │  2.5900 │",
        "╘═══════════════════════╧═════════╧═════════╧═════════╧══════════╧═════════╛",
        "[INFO] Throughput 1000*batchsize.mean(4)/NPU_compute_time.mean(2.5): 1600.0",
    ])
    s = parse_ais_bench_output(text).summaries[0]
    assert s.npu_compute_time == {"min": 2.4, "max": 2.6, "mean": 2.5, "median": 2.5, "p99": 2.59}
    assert (s.throughput, s.batchsize) == (1600.0, 4)


def _summary_json(times: list, key99: str) -> dict:
    durations = [t[1] - t[0] if isinstance(t, list) else t for t in times]
    a = np.asarray(durations)
    stats = {"min": a.min(), "max": a.max(), "mean": a.mean(), "median": float(np.median(a)),
             key99: float(np.percentile(a, 99)), "count": len(a)}
    return {"filesinfo": {}, "args": ["ais_bench"], "NPU_compute_time": {k: float(v) for k, v in stats.items()},
            "H2D_latency": {"min": 0.1, "max": 0.1, "mean": 0.1, "median": 0.1, key99: 0.1, "count": 3},
            "D2H_latency": {"min": 0.02, "max": 0.02, "mean": 0.02, "median": 0.02, key99: 0.02, "count": 3},
            "npu_compute_time_list": times, "throughput": 1000 * 8 / float(a.mean()), "pid": 1}


@pytest.mark.parametrize("key99", ["percentile(99%)", "P99"])
@pytest.mark.parametrize("pairs", [False, True])
def test_bench_row_from_summary_json(key99: str, pairs: bool) -> None:
    # summary.py writes "percentile(99%)" (older) or "P99" (newer); npu_compute_time_list holds
    # ms per call, or [start, end] pairs in multi-thread runs
    durations = [2.0, 2.2, 2.4, 2.6, 3.0, 2.1, 2.3, 2.5, 2.7, 2.9]
    times = [[10.0 * i, 10.0 * i + d] for i, d in enumerate(durations)] if pairs else durations
    doc = json.loads(json.dumps(_summary_json(times, key99)))
    row = bench_row(8, summary_json=doc, warmup=1, iterations=10)
    assert row["batch"] == 8 and row["iterations"] == 10 and row["source"] == "ais_bench summary.json"
    assert row["latency_ms"]["mean"] == pytest.approx(np.mean(durations))
    assert row["latency_ms"]["p50"] == pytest.approx(np.percentile(durations, 50))
    assert row["latency_ms"]["p90"] == pytest.approx(np.percentile(durations, 90))
    assert row["latency_ms"]["p99"] == pytest.approx(np.percentile(durations, 99))
    assert row["device_ips"] == pytest.approx(row["reported_throughput"], rel=1e-9)
    assert row["h2d_ms"] == 0.1 and row["d2h_ms"] == 0.02


def test_bench_row_without_a_mean_is_an_error() -> None:
    with pytest.raises(ValueError, match="mean"):
        bench_row(1, summary_json={"throughput": 3.0})


# ------------------------------------------------------------------------------------------ atc
def test_atc_success_and_failure() -> None:
    ok = parse_atc_output("ATC start working now, please wait for a moment.\n"
                          "W11001: Op [Conv_0] does not hit the high-priority operator information library\n"
                          "ATC run success, welcome to the next use.\n", 0)
    assert ok.ok and ok.success_line and ok.warnings == ["W11001"] and ok.errors == []
    assert ok.message == "ATC run success, welcome to the next use."
    bad = parse_atc_output("ATC start working now, please wait for a moment.\n"
                           "E10001: Value [x] for parameter [--input_shape] is invalid.\n"
                           "ATC run failed, Please check the detail log, Try 'atc --help' for more information\n", 1)
    assert not bad.ok and bad.errors == ["E10001"] and "--input_shape" in bad.message
    # exit code decides, even when the success line is missing
    quiet = parse_atc_output("", 0)
    assert quiet.ok and not quiet.success_line
    assert not parse_atc_output("ATC run success, welcome to the next use.\n", 139).ok


def test_version_info() -> None:
    assert parse_version_info("Version=7.0.RC1\nversion_dir=7.0.RC1\n") == "7.0.RC1"
    assert parse_version_info("version=6.0.RC1\n") == "6.0.RC1"
    assert parse_version_info("package=toolkit\n") is None
