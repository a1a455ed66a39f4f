"""An OpenVINO compiled model behind the Runner interface.

Output tensors of an infer request are overwritten by its next inference, so every output is
copied out before it is returned (the core keeps outputs across batches). In throughput mode
the compiled model has several streams, which only pay off with several requests in flight:
``run`` splits a batch over the streams and ``run_many`` keeps one request per batch in flight,
both through ``openvino.AsyncInferQueue``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hrdeploy.errors import UserError
from hrdeploy.target import Runner


def _prop(compiled: Any, name: str) -> Any:
    try:
        return compiled.get_property(name)
    except Exception:  # virtual devices (AUTO) do not report every property
        return None


class OpenVinoRunner(Runner):
    def __init__(self, xml: Path, device: str, config: dict[str, Any], *, version: str,
                 output_names: Sequence[str] | None = None) -> None:
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(str(xml))
            self.compiled = core.compile_model(model, device, config)
        except Exception as e:  # OpenVINO's own exception types: one line with what it said
            raise UserError(f"OpenVINO cannot compile {xml.name} for {device}: {' '.join(str(e).split())[:240]}") from None
        if len(self.compiled.inputs) != 1:
            raise UserError(f"{xml} has {len(self.compiled.inputs)} inputs; hrdeploy models take one image tensor")
        port = self.compiled.inputs[0]
        self.input_name = port.get_any_name()
        self._outputs = self._order_outputs(list(self.compiled.outputs), output_names)
        self.output_names = [list(output_names)[i] if output_names else o.get_any_name()
                             for i, o in enumerate(self._outputs)]
        shape = port.get_partial_shape()
        self.batch_sizes = None if shape[0].is_dynamic else (shape[0].get_length(),)
        self.sizes = ((shape[2].get_length(), shape[3].get_length()),) \
            if shape.rank.get_length() == 4 and shape[2].is_static and shape[3].is_static else None
        self.device = device
        self.config = dict(config)
        self.hint = str(config.get("PERFORMANCE_HINT", "LATENCY")).lower()
        self.streams = int(_prop(self.compiled, "NUM_STREAMS") or 1)
        threads = _prop(self.compiled, "INFERENCE_NUM_THREADS")
        self.threads = int(threads) if threads else config.get("INFERENCE_NUM_THREADS")
        precision = _prop(self.compiled, "INFERENCE_PRECISION_HINT")
        self.execution = _type_name(precision) if precision is not None else str(config.get("INFERENCE_PRECISION_HINT"))
        self.requests = max(1, int(_prop(self.compiled, "OPTIMAL_NUMBER_OF_INFER_REQUESTS") or 1))
        self._request = self.compiled.create_infer_request()
        # several requests in flight only where there are several streams to run them
        self._queue = ov.AsyncInferQueue(self.compiled, self.requests) if self.hint == "throughput" and self.requests > 1 else None
        self._ov = ov
        self.label = (f"OpenVINO {version} {device}, {self.execution}, {self.hint} hint, "
                      f"{self.streams} stream{'s' if self.streams != 1 else ''}"
                      + (f", {self.threads} threads" if self.threads else ""))

    @staticmethod
    def _order_outputs(ports: list[Any], names: Sequence[str] | None) -> list[Any]:
        """The compiled outputs in the order of the manifest's output names (an OpenVINO
        output may carry several names; the source graph's is among them)."""
        if not names:
            return ports
        ordered = []
        for name in names:
            match = [p for p in ports if name in p.get_names()]
            if not match:
                raise UserError(f"the OpenVINO model has no output {name!r}",
                                f"its outputs: {', '.join(p.get_any_name() for p in ports)}")
            ordered.append(match[0])
        return ordered

    def _copy_out(self, request: Any) -> list[np.ndarray]:
        return copy_outputs(request, self._outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = self.input_array(feeds, np.float32)
        if self._queue is not None and len(x) > 1 and self.batch_sizes is None:
            parts = np.array_split(x, min(len(x), self.requests))
            outs = self._run_queued([np.ascontiguousarray(p) for p in parts])
            return [np.concatenate([o[i] for o in outs]) for i in range(len(self._outputs))]
        self._request.infer({0: x}, share_inputs=True, share_outputs=True)
        return self._copy_out(self._request)

    def run_many(self, batches: Sequence[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        if self._queue is None or len(batches) < 2:
            return [self.run(b) for b in batches]
        return self._run_queued([self.input_array(b, np.float32) for b in batches])

    def _run_queued(self, inputs: list[np.ndarray]) -> list[list[np.ndarray]]:
        """Every input on the queue's requests in turn, several in flight at once. The requests
        are driven from this thread and each one's outputs copied here before it takes its
        next input: no Python callback runs on OpenVINO's threads, where a garbage collection
        that frees an OpenVINO object aborts the process (the thread would join itself)."""
        assert self._queue is not None
        requests = [self._queue[i] for i in range(len(self._queue))]
        results: list[list[np.ndarray] | None] = [None] * len(inputs)
        busy: dict[int, int] = {}  # request slot -> index of the input it runs
        try:
            for i, x in enumerate(inputs):
                slot = i % len(requests)
                if slot in busy:
                    requests[slot].wait()
                    results[busy.pop(slot)] = copy_outputs(requests[slot], self._outputs)
                requests[slot].set_input_tensor(self._ov.Tensor(x, shared_memory=True))
                requests[slot].start_async()
                busy[slot] = i
            for slot, index in busy.items():
                requests[slot].wait()
                results[index] = copy_outputs(requests[slot], self._outputs)
        except RuntimeError as e:  # OpenVINO's inference errors
            for slot in busy:
                requests[slot].wait()
            raise UserError(f"OpenVINO inference failed: {' '.join(str(e).split())[:240]}") from None
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if self._queue is not None:
            self._queue.wait_all()
        self._queue = None
        self._request = None
        self.compiled = None


def copy_outputs(request: Any, ports: Sequence[Any]) -> list[np.ndarray]:
    """The request's outputs as arrays of the caller's own: OpenVINO writes the next inference
    of this request into the same output tensors."""
    return [np.array(request.get_tensor(port).data, dtype=np.float32, copy=True) for port in ports]


def _type_name(value: Any) -> str:
    """``<Type: 'float32'>`` -> ``f32``: the short names OpenVINO's hints take."""
    text = str(getattr(value, "get_type_name", lambda: value)())
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(text, text)
