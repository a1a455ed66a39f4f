"""ATC plans: the behaviour mutation testing (tools/mutation.py) found unpinned, checked against
ATC's documented rules (the limit of 100 gears, --insert_op_conf refused with --dynamic_dims,
--input_format NCHW/ND for ONNX) and the file names seed 000 gives its per-batch .om files."""
from __future__ import annotations

import pytest

from hrdeploy.errors import UserError
from hrdeploy.model import InputSpec
from hrdeploy_target_ascend.commands import parse_aipp_config, plan_atc

HRNET = InputSpec(name="image", channels=3, height=224, width=224)


def _opts(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in argv[1:])


def test_nhwc_models_keep_their_dimension_order() -> None:
    # ATC takes only NCHW, ND or NCDHW for ONNX: an NHWC input is ND, its shape in NHWC order
    plan = plan_atc(InputSpec(name="x", height=224, width=192, layout="NHWC"), [2], "fp16", "310P3")
    opts = _opts(plan.jobs[0].argv)
    assert (opts["input_format"], opts["input_shape"]) == ("ND", "x:2,224,192,3")


def test_aipp_goes_with_a_fixed_size_and_not_with_gears() -> None:
    plan = plan_atc(HRNET, [1], "fp16", "310P3", aipp="aipp_op {}")
    assert _opts(plan.jobs[0].argv)["insert_op_conf"] == "aipp.cfg" and plan.to_dict()["aipp"] is True
    assert plan_atc(HRNET, [1], "fp16", "310P3").to_dict()["aipp"] is False
    two = InputSpec(height=None, width=None, gears=((224, 224), (256, 256)))
    with pytest.raises(UserError, match="AIPP cannot be combined with size gears"):
        plan_atc(two, [1], "fp16", "310P3", aipp="aipp_op {}")


def test_dynamic_batches_times_gears_are_limited_to_100() -> None:
    gears = InputSpec(height=None, width=None, gears=tuple((32 * (i + 1), 64) for i in range(5)))
    assert plan_atc(gears, range(1, 21), "fp16", "310P3").dynamic == "dims"          # 20 x 5 = 100
    with pytest.raises(UserError, match=r"21 batch sizes x 5 gears exceeds ATC's 100 gears"):
        plan_atc(gears, range(1, 22), "fp16", "310P3")
    static = plan_atc(gears, range(1, 22), "fp16", "310P3", batch_mode="static")    # one .om per batch
    assert len(static.jobs) == 21 and static.batch_mode == "static"


def test_logs_om_names_and_batch_modes() -> None:
    one = plan_atc(HRNET, [1], "fp16", "310P3")
    assert (one.jobs[0].log, one.batch_mode) == ("atc.log", "static")
    assert one.to_dict()["om_by_batch"] == {"1": "model.om"}
    dyn = plan_atc(HRNET, [1, 4], "fp16", "310P3")
    assert (dyn.jobs[0].log, dyn.batch_mode, dyn.dynamic) == ("atc.log", "dynamic", "batch")
    assert dyn.to_dict()["om_by_batch"] == {}
    static = plan_atc(HRNET, [1, 4], "fp16", "310P3", batch_mode="static", prefix="hrnet")
    assert [j.log for j in static.jobs] == ["atc_hrnet_bs1.log", "atc_hrnet_bs4.log"]
    assert static.to_dict()["om_by_batch"] == {"1": "hrnet_bs1.om", "4": "hrnet_bs4.om"}   # seed 000's names


def test_aipp_values_may_contain_a_colon() -> None:
    assert parse_aipp_config("aipp_op {\n  key : a:b  # note\n}\n") == {"key": "a:b"}


@pytest.mark.parametrize("batches", [[], [0], [0, 4]])
def test_batch_sizes_must_be_positive(batches: list[int]) -> None:
    with pytest.raises(UserError, match="batch sizes must be positive integers"):
        plan_atc(HRNET, batches, "fp16", "310P3")
