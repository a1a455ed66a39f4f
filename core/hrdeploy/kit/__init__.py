"""The target author's kit: what every vendor target needs besides the base classes in
:mod:`hrdeploy.target`, in one place.

* :mod:`hrdeploy.kit.plan` — plans: the ``plan.json`` / ``plan.sh`` a ``convert --dry-run``
  writes, the option helpers targets use, and ``execute_plan`` behind ``Target.run_plan``
  (``hrdeploy convert --from-plan`` on the machine with the toolchain);
* :mod:`hrdeploy.kit.probe` — finding vendor tools, runtime modules and device nodes without
  side effects, and :class:`~hrdeploy.kit.probe.ToolchainStatus`, the shape of what a probe found;
* :mod:`hrdeploy.kit.normalise` — the model's mean/std normalisation folded into a vendor
  compiler's preprocessing (Ascend AIPP, VastAI vdsp);
* :mod:`hrdeploy.kit.toolrun` — running a vendor tool in its own process group, with a
  timeout, forwarded interrupts and a streamed log (what ``ConvertRequest.run`` uses).

Stand-in executables for a target's tests are in :mod:`hrdeploy.testing.standins`.
"""
