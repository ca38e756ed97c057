"""The bare minimum of the job in NumPy, the yardstick of bench_rewrite.py.

Memory-map the input, find the float32 constant buffers (walking the model
with the ``tflite`` package), ``np.clip`` + ``astype('<f2')`` each, and write
the results one after the other to the output file. No DEQUANTIZE, no valid
model: just the reading, casting and writing every rewriter has to do.

    python benchmarks/baseline.py IN OUT
"""

from __future__ import annotations

import mmap
import sys

import numpy as np
import tflite


def main(path_in: str, path_out: str) -> None:
    with open(path_in, "rb") as handle:
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    model = tflite.Model.GetRootAs(data, 0)
    float32_buffers = set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            if tensor.Type() == tflite.TensorType.FLOAT32 and tensor.Buffer() > 0:
                float32_buffers.add(tensor.Buffer())
    with open(path_out, "wb") as out:
        for b in sorted(float32_buffers):
            buffer = model.Buffers(b)
            if buffer.Offset() > 1:  # data after the flatbuffer (models over 2 GB)
                values = np.frombuffer(data, "<f4", buffer.Size() // 4, buffer.Offset())
            else:
                o = buffer._tab.Offset(4)
                if o == 0:
                    continue
                start = buffer._tab.Vector(o)
                values = np.frombuffer(data, "<f4", buffer._tab.VectorLen(o) // 4, start)
            out.write(np.clip(values, -65504, 65504).astype("<f2"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
