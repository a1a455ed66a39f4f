"""hrdeploy model plugin: bottom-up DEKR human pose (HRNet/DEKR, COCO keypoints).

``spec`` holds the model (:class:`~hrdeploy_dekr.spec.DEKRSpec`), ``model`` the PyTorch network
(torch imported only there), ``pipeline``/``postprocess``/``rescore`` the numpy run-time code,
``synthetic`` builders for end-to-end tests.
"""
