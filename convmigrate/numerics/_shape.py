"""The geometry of one correlation, as every kernel and the cost model see it.

A correlation here is x (N, C_in, Lp), already padded, against w (C_out, C_in/groups, K) with
a stride and a dilation: output step t of channel o reads input samples t*stride + k*dilation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConvShape:
    """x (batch, c_in, padded) correlated with w (c_out, c_in/groups, taps)."""

    batch: int
    c_in: int
    c_out: int
    groups: int
    taps: int
    stride: int
    dilation: int
    padded: int
    itemsize: int = 4  # float32; 8 for float64

    @classmethod
    def of(cls, xp: np.ndarray, w: np.ndarray, stride: int, dilation: int, groups: int) -> ConvShape:
        return cls(xp.shape[0], xp.shape[1], w.shape[0], groups, w.shape[2], stride, dilation, xp.shape[2],
                   xp.dtype.itemsize)

    @property
    def cg_in(self) -> int:
        return self.c_in // self.groups

    @property
    def cg_out(self) -> int:
        return self.c_out // self.groups

    @property
    def span(self) -> int:
        """Input samples one output reads, first to last: (K-1)*dilation + 1."""
        return (self.taps - 1) * self.dilation + 1

    @property
    def length(self) -> int:
        """Output steps L_out."""
        return (self.padded - self.span) // self.stride + 1

    @property
    def depthwise(self) -> bool:
        """One input channel per group (any channel multiplier), more than one group."""
        return self.cg_in == 1 and self.groups > 1

    @property
    def macs(self) -> int:
        """Multiply-adds of the direct computation."""
        return self.batch * self.c_out * self.cg_in * self.taps * self.length

    @property
    def classes(self) -> Classes:
        return Classes.of(self.stride, self.dilation)


@dataclass(frozen=True)
class Classes:
    """Output steps grouped so that each group reads one phase of the input, undilated.

    With d = dilation, s = stride, g = gcd(s, d): output t = q*count + u (u < count = d/g) reads
    x[(first(u) + q*step + k) * d + phase(u)] for tap k, where step = s/g. So each class u is an
    undilated conv with stride `step` over the input phase x[phase(u)::d], and its K taps are
    K consecutive samples of that phase. (Plain convs: count 1, step = stride, phase 0.)
    """

    count: int
    step: int
    stride: int
    dilation: int

    @classmethod
    def of(cls, stride: int, dilation: int) -> Classes:
        g = math.gcd(stride, dilation)
        return cls(dilation // g, stride // g, stride, dilation)

    def phase(self, u: int) -> int:
        return (u * self.stride) % self.dilation

    def first(self, u: int) -> int:
        return (u * self.stride) // self.dilation

    def steps(self, u: int, length: int) -> int:
        """How many of `length` consecutive output steps (from a multiple of count) are in class u."""
        return max(0, -(-(length - u) // self.count))


@dataclass(frozen=True)
class ClassSteps:
    """The outputs of phase class u in a window of output steps t0:t1 of items n0:n1: steps
    t0 + u + q*count for q < steps, reading the class's input phase from sample `origin`."""

    n0: int
    n1: int
    t0: int
    t1: int
    u: int
    steps: int
    origin: int

    def blocks(self, shape: ConvShape, outputs: int, hop: int, width: int) -> tuple[int, int]:
        """(count, full): blocks of `outputs` steps covering the class's steps, block b reading
        `width` phase samples from origin + b*hop*dilation; the first `full` lie within the input,
        the rest run past it (zeros there)."""
        count = -(-self.steps // outputs)
        available = -(-(shape.padded - self.origin) // shape.dilation)  # phase samples from origin
        return count, min(count, max(0, (available - width) // hop + 1))


def class_steps(shape: ConvShape, windows: Iterable[tuple[int, int, int, int]]) -> Iterator[ClassSteps]:
    """Every (window, phase class) with outputs, for kernels that run a class at a time."""
    classes = shape.classes
    for n0, n1, t0, t1 in windows:
        for u in range(classes.count):
            steps = classes.steps(u, t1 - t0)
            if steps:
                origin = t0 * shape.stride + classes.first(u) * shape.dilation + classes.phase(u)
                yield ClassSteps(n0, n1, t0, t1, u, steps, origin)
