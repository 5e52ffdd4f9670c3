"""What a comparison found: how each side loaded, each output, each layer, and the whole.

Values only (no I/O): the CLI renders them, `--report` serialises `CompareResult.to_json()`.
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from convmigrate import __version__
from convmigrate.compare.differences import Difference
from convmigrate.errors import CheckFailedError
from convmigrate.text import printable
from convmigrate.vocab import Framework


class LayerStatus(str, enum.Enum):
    OK = "ok"
    DIFFERS = "differs"  # beyond tolerance
    SHAPE = "shape mismatch"  # the outputs' shapes (or number of tensors) differ
    NO_CELL = "no MindSpore cell"  # the port has no layer of that name
    NOT_RUN = "not run in MindSpore"  # the cell exists but was not called (that many times)
    NOT_RECORDED = "not recorded"  # past COMPARE_MAX_RECORDED_BYTES

    @property
    def failed(self) -> bool:
        return self in (LayerStatus.DIFFERS, LayerStatus.SHAPE)


@dataclass
class LayerComparison:
    """One call of a PyTorch module and the MindSpore cell the conversion paired it with."""

    name: str  # PyTorch module name
    call: int  # 0: its first call in the forward pass, 1: its second...
    torch_class: str
    ms_name: str | None
    ms_class: str | None
    status: LayerStatus
    difference: Difference | None

    @property
    def label(self) -> str:
        return self.name if self.call == 0 else f"{self.name} (call {self.call + 1})"

    @property
    def display_name(self) -> str:
        """The label, with the MindSpore cell's name where the conversion renamed the layer."""
        return f"{self.label} -> {self.ms_name}" if self.ms_name is not None and self.ms_name != self.name else self.label

    @property
    def classes(self) -> str:
        """'Conv1d / Conv1d', 'Linear / Dense', 'LSTM / -' (no cell ran)."""
        return f"{self.torch_class} / {self.ms_class or '-'}"

    def to_json(self) -> dict:
        return {
            "name": self.name, "call": self.call, "torch_class": self.torch_class,
            "mindspore_name": self.ms_name, "mindspore_class": self.ms_class, "status": self.status.value,
            **(self.difference.to_json() if self.difference else {}),
        }


@dataclass
class OutputComparison:
    name: str  # the output's path in the PyTorch result: 'output', '0', 'last_hidden_state'
    difference: Difference

    def to_json(self) -> dict:
        return {"name": self.name, **self.difference.to_json()}


@dataclass
class LoadResult:
    """How one network took its weights: every left-out name, at once.

    `missing`: network parameters left unloaded; `unexpected`: tensors with no home in the
    network; `mismatched`: names both have with different shapes ("name: network (..), file (..)").
    """

    framework: Framework
    source: str  # the file (or conversion) the weights came from
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def failures(self) -> list[str]:
        return [*self.missing, *self.unexpected, *(m.split(":")[0] for m in self.mismatched)]

    def to_json(self) -> dict:
        return {
            "framework": self.framework.value, "source": self.source, "ok": self.ok, "loaded": self.loaded,
            "missing": self.missing, "unexpected": self.unexpected, "mismatched": self.mismatched, "notes": self.notes,
        }


@dataclass
class CompareResult:
    weights: str
    weights_format: str
    direction: str  # the conversion: torch2ms or ms2torch
    inputs: list[dict]
    tolerance: tuple[float, float]
    seed: int
    torch_model: str = ""
    ms_model: str = ""
    loads: list[LoadResult] = field(default_factory=list)
    conversion: Any = None  # migrate.MigrationResult
    outputs: list[OutputComparison] = field(default_factory=list)
    layers: list[LayerComparison] = field(default_factory=list)
    only_in_mindspore: list[str] = field(default_factory=list)
    failure: str | None = None  # a network that raised: "MindSpore network, in cell 'x': ..."
    failed_layer: str | None = None
    hint: str | None = None  # the first layer that parts: as PyTorch has it, and its translation
    notes: list[str] = field(default_factory=list)  # e.g. the models' own warnings during the run
    kept: str | None = None  # -o: the converted checkpoint, kept when the port is proven

    @property
    def loaded(self) -> bool:
        return bool(self.loads) and all(load.ok for load in self.loads)

    @property
    def ok(self) -> bool:
        return self.loaded and self.failure is None and bool(self.outputs) and all(o.difference.passed for o in self.outputs)

    def first_divergence(self) -> LayerComparison | None:
        """The first layer (in PyTorch's execution order) beyond tolerance or of another shape."""
        return next((layer for layer in self.layers if layer.status.failed), None)

    def unpaired_before(self, layer: LayerComparison | None) -> list[LayerComparison]:
        """PyTorch layers the port does not run, up to `layer`: a missing activation shows here."""
        end = self.layers.index(layer) if layer is not None else len(self.layers)
        return [c for c in self.layers[:end] if c.status in (LayerStatus.NO_CELL, LayerStatus.NOT_RUN)]

    def failures(self) -> list[str]:
        """What a failed run names: unloaded names, the layer to fix, the failing outputs."""
        if self.ok:
            return []
        names = [name for load in self.loads for name in load.failures()]
        if self.failed_layer:
            names.append(self.failed_layer)
        first = self.first_divergence()
        if first is not None and first.label not in names:
            names.append(first.label)
        return names + [o.name for o in self.outputs if not o.difference.passed]

    def summary(self) -> str:
        """One line: what failed and the layer to fix (the error's message), or what passed."""
        loads = [load for load in self.loads if not load.ok]
        if loads:
            return "the weights do not load strictly; " + "; ".join(_load_summary(load) for load in loads)
        if self.failure:
            return self.failure
        failing = [o.name for o in self.outputs if not o.difference.passed]
        first = self.first_divergence()
        if first is not None and not self.ok:
            kind = "has another output shape" if first.status is LayerStatus.SHAPE else "is the first layer beyond tolerance"
            unpaired = [layer.label for layer in self.unpaired_before(first)]
            before = f" (after {_names(unpaired, 4)}, which the port does not run)" if unpaired else ""
            detail = first.difference.detail if first.difference else ""
            return (f"the port differs: {first.display_name} ({first.classes}) {kind}{before}: {detail}; "
                    f"outputs beyond tolerance: {_names(failing) or 'none'}")
        if failing:
            return (f"outputs beyond tolerance: {_names(failing)}, while every paired layer is within tolerance: the "
                    "difference is in code between layers (functional calls in a forward/construct)")
        worst = max((o.difference.max_rel for o in self.outputs), default=0.0)
        paired = sum(1 for layer in self.layers if layer.difference is not None)
        return (f"{len(self.outputs)} output(s) match (largest relative error {worst:.3g}; rtol {self.tolerance[0]:g}, "
                f"atol {self.tolerance[1]:g}); {paired} layer call(s) paired")

    def error(self) -> CheckFailedError | None:
        """The error this result fails with (exit 1), or None."""
        return None if self.ok else CheckFailedError(self.summary())

    def to_json(self) -> dict:
        """The report: what `--json` prints and `--report` writes."""
        first = self.first_divergence()
        conversion = self.conversion
        return {
            "convmigrate": __version__,
            "command": "compare",
            "weights": {"path": self.weights, "format": self.weights_format},
            "torch_model": self.torch_model,
            "mindspore_model": self.ms_model,
            "direction": self.direction,
            "inputs": self.inputs,
            "tolerance": {"rtol": self.tolerance[0], "atol": self.tolerance[1]},
            "seed": self.seed,
            "load": [load.to_json() for load in self.loads],
            "conversion": None if conversion is None else {
                "plan": conversion.plan.to_json(),
                "verification": conversion.verification.to_json() if conversion.verification else None,
            },
            "outputs": [o.to_json() for o in self.outputs],
            "layers": [layer.to_json() for layer in self.layers],
            "first_divergence": first.to_json() if first else None,
            "only_in_mindspore": self.only_in_mindspore,
            "failure": self.failure,
            "failed_layer": self.failed_layer,
            "hint": self.hint,
            "notes": self.notes,
            "kept": self.kept,
            "summary": self.summary(),
            "failures": self.failures(),
            "ok": self.ok,
            "exit_code": 0 if self.ok else CheckFailedError.exit_code,
        }

    def junit_xml(self) -> str:
        """One test case per network load, per output, and one for the layers (CI dashboards)."""
        suite = "compare"
        root = ET.Element("testsuite", name=suite)

        def case(name: str, failure: str | None, out: str) -> None:
            element = ET.SubElement(root, "testcase", classname=suite, name=printable(name))
            ET.SubElement(element, "system-out").text = printable(out)
            if failure is not None:
                ET.SubElement(element, "failure", message=printable(failure))

        for load in self.loads:
            case(f"load {NETWORK[load.framework]}", None if load.ok else _load_summary(load),
                 f"{load.loaded} loaded from {load.source}")
        if self.failure:
            case("run", self.failure, "")
        for output in self.outputs:
            d = output.difference
            case(f"output {output.name}", None if d.passed else d.detail, f"max_abs={d.max_abs:.3g} max_rel={d.max_rel:.3g}")
        first = self.first_divergence()
        case("layers", None if first is None or self.ok else self.summary(),
             " ".join(f"{layer.label}={layer.status.value}" for layer in self.layers))
        root.set("tests", str(len(root)))
        root.set("failures", str(sum(element.find("failure") is not None for element in root)))
        return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


NETWORK = {Framework.TORCH: "PyTorch model", Framework.MINDSPORE: "MindSpore network"}


def _names(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _load_summary(load: LoadResult) -> str:
    what = []
    if load.missing:
        what.append(f"{len(load.missing)} parameter(s) left unloaded ({_names(load.missing)})")
    if load.unexpected:
        what.append(f"{len(load.unexpected)} tensor(s) with no home ({_names(load.unexpected)})")
    if load.mismatched:
        what.append(f"{len(load.mismatched)} of another shape ({_names([m.split(':')[0] for m in load.mismatched])})")
    return f"{NETWORK[load.framework]}: " + ", ".join(what or load.notes)
