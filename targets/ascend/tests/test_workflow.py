"""``hrdeploy ascend``'s result format: imagenet_acc_eval.py's "Overall statistical evaluation"
layout, from the core's top-k summary."""
from __future__ import annotations

from hrdeploy.model import SampleRef
from hrdeploy.tasks.classification import TopKMetric
from hrdeploy_target_ascend.workflow import ascend_format


def test_the_summary_in_the_ascend_guides_result_format() -> None:
    m = TopKMetric(num_classes=1000)
    for label, ranked in ((3, [3, 1, 2, 4, 5]), (4, [1, 2, 3, 4, 5]), (9, [1, 2, 3, 4, 5]), (1, [0, 1, 2, 3, 4])):
        m.update(SampleRef("x", None, info={"label": label}), {"top_k": [{"index": i} for i in ranked]})
    assert ascend_format(m.summary()) == {"title": "Overall statistical evaluation", "value": [
        {"key": "Number of images", "value": "4"}, {"key": "Number of classes", "value": "1000"},
        {"key": "Top1 accuracy", "value": "25.00%"}, {"key": "Top2 accuracy", "value": "50.00%"},
        {"key": "Top3 accuracy", "value": "50.00%"}, {"key": "Top4 accuracy", "value": "75.00%"},
        {"key": "Top5 accuracy", "value": "75.00%"}]}
