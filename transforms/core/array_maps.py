"""Ready-made ``--map`` functions for compress_arrays (ndarray block -> ndarray block)."""
import numpy as np


def l2_normalise(block: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero); float dtypes kept, ints -> float32."""
    rows = block.reshape(block.shape[0], -1)
    dtype = block.dtype if block.dtype.kind == "f" else np.dtype(np.float32)
    rows = rows.astype(dtype, copy=False)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return out.reshape(block.shape)


def to_float32(block: np.ndarray) -> np.ndarray:
    return block.astype(np.float32)
