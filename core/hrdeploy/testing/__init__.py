"""Test helpers for hrdeploy plugins: seeded weights (:mod:`hrdeploy.testing.seeded`), the
plugin contract suites (:mod:`hrdeploy.testing.contract`) and CLI helpers."""
