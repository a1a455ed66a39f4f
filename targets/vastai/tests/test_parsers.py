"""vamp and vasmi parsers on the recorded outputs in tests/fixtures/toolchains/."""
from __future__ import annotations

from pathlib import Path

import pytest

from hrdeploy_target_vastai.parsers import parse_vamp_output, parse_vasmi, vamp_row


def read(fixtures_dir: Path, name: str) -> str:
    return (fixtures_dir / "toolchains" / name).read_text(encoding="utf-8")


def test_vamp_2_1_0_with_percentiles(fixtures_dir: Path) -> None:
    runs = parse_vamp_output(read(fixtures_dir, "vamp_2.1.0_ecbsr_int8_with_percentiles.txt"))
    assert len(runs) == 1
    run = runs[0]
    assert run.command.startswith("./vamp_2.1.0 -m deploy_weights/ecbsr_plain_2x-int8-percentile-1_1_1080_1920-vacc/mod")
    assert run.values["model input shape 0"].startswith("[3,1080,1920]")
    assert run.batch == 1 and run.values["instances"] == 1 and run.values["devices"] == [0]
    assert run.throughput == pytest.approx(81.5821)
    assert run.model_latency_us == {"mean": 30561, "min": 15873, "max": 40153, "p50": 27849, "p90": 36840,
                                    "p95": 36894, "p99": 36984}
    assert run.e2e_latency_us["p99"] == 37039 and run.e2e_latency_us["mean"] == 30608
    row = vamp_row(run)
    assert row["batch"] == 1 and row["device_ips"] == pytest.approx(81.5821)
    assert row["latency_ms"]["mean"] == pytest.approx(30.561) and row["latency_ms"]["p99"] == pytest.approx(36.984)
    assert row["e2e_latency_ms"]["p50"] == pytest.approx(27.915)
    assert row["temperature_c"] == pytest.approx(49.1461) and row["card_power_w"] == pytest.approx(31.4001)
    assert row["ai_utilisation_pct"] == pytest.approx(94.9018) and row["die_memory_mb"] == pytest.approx(1516.29)


def test_vamp_2_x_two_runs(fixtures_dir: Path) -> None:
    runs = parse_vamp_output(read(fixtures_dir, "vamp_2.x_yolov4_darknet_fp16_int8.txt"))
    assert [r.label for r in runs] == ["fp16", "int8"]
    fp16, int8 = runs
    assert fp16.values["samples"] == 1024 and fp16.values["forward time (s)"] == pytest.approx(8.23685)
    assert fp16.throughput == pytest.approx(124.319) and int8.throughput == pytest.approx(365.421)
    # qps is samples per second: samples / forward time gives the same figure
    for r in runs:
        assert r.values["samples"] / r.values["forward time (s)"] == pytest.approx(r.throughput, rel=1e-3)
    row = vamp_row(int8)
    assert row["iterations"] == 1024 and row["device_ips"] == pytest.approx(365.421)
    # a single-figure latency block (avg = min = max) also gives the median
    assert row["latency_ms"] == {"mean": 2.643, "min": 2.643, "max": 2.643, "p50": 2.643}
    assert row["e2e_latency_ms"]["mean"] == pytest.approx(46.13)


def test_vamp_variants_are_tolerated() -> None:
    text = """*** number of instances in each device: 2 ****
   devices: [0,1]
batch szie: 4
samples: 2048
forwad time (s): 2.0
model latency (us):
  avg latency: 1500
"""
    (run,) = parse_vamp_output(text)
    assert run.batch == 4 and run.values["instances"] == 2 and run.values["devices"] == [0, 1]
    assert run.throughput == pytest.approx(1024.0)  # no qps line: samples / forward time
    assert vamp_row(run)["latency_ms"] == {"mean": 1.5}
    with pytest.raises(ValueError, match="throughput"):
        vamp_row(parse_vamp_output("- number of instances in each device: 1\nbatch size: 1\n")[0])


def test_vasmi_card_mode_and_clocks(fixtures_dir: Path) -> None:
    info = parse_vasmi(read(fixtures_dir, "vasmi_getcardmode_getfreq_VA1-16G.txt"))
    assert info.smi_version == "3.2.1"
    assert len(info.entries) == 1
    e = info.entries[0]
    assert (e["entry"], e["device_id"], e["die_id"], e["die_index"]) == (0, 0, 0, "0x00000000")
    assert e["fields"] == {"FileVersion": "V2", "CardType": "VA1-16G", "S/N": "FCA129E00172",
                           "BboxMode": "Highperf-AI"}
    assert e["clocks_mhz"]["OCLK"] == 880 and e["clocks_mhz"]["CEDARCLK"] == 500
    assert len(e["clocks_mhz"]) == 12
    assert info.card_types == ["VA1-16G"]
