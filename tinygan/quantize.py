"""Reduced-precision copies of the exported ONNX generator and what they cost in image quality.

- ``generator.int8.onnx``: onnxruntime post-training *static* quantisation (QDQ format, per-channel symmetric
  int8 weights, uint8 activations, MinMax calibration). Calibration feeds: ``calibration_samples`` (z, y)
  pairs, classes cycled from the trained list, ``z = tinygan.teacher.draw_z(latent, seed + 1, y, k)`` (seed
  + 1: a different stream from the quality images' ``seed``), run in batches of ``CALIB_BATCH``.
- ``generator.fp16.onnx``: float16 weights and activations, float32 inputs and output (``keep_io_types``).

Neither is held to the fp32 tolerance (their rounding is the point): ``quality_cost`` measures instead how far
their images are from the fp32 model's, as FID and KID (``tinygan.frechet`` / ``tinygan.metrics``) between
the features of ``n`` fp32 images and the ``n`` images of the same (z, y) from the reduced model, with the
evaluation's extractor (params ``evaluate.extractor`` / ``evaluate.extractor_path``: the demo's judge or
Inception). 0 means indistinguishable to the extractor. Same inputs give byte-identical files (MinMax
calibration is deterministic; onnxruntime writes no timestamps).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from tinygan.errors import TinyGANError
from tinygan.io import write_bytes

CALIB_BATCH = 16
INT8_METHOD = ("onnxruntime static quantisation, QDQ, per-channel int8 weights, uint8 activations, "
               "MinMax calibration")
FP16_METHOD = "float16 weights and activations, float32 inputs and output (onnxruntime float16 converter)"
KID_SUBSETS = 100


def labelled_z(class_list: list[int], n: int, latent: str, seed: int, truncation: float,
               z_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (z, y) pairs, classes cycled from ``class_list``, z of pair k = ``draw_z(latent, seed, y_k, k)``."""
    from tinygan.teacher import draw_z

    y = np.array([class_list[k % len(class_list)] for k in range(n)], dtype=np.int64)
    return draw_z(latent, seed, y, np.arange(n), truncation, z_dim), y


def save_int8(onnx_path: Path, out_path: Path, z: np.ndarray, y: np.ndarray) -> None:
    """Statically quantise ``onnx_path`` into ``out_path``, calibrated on the feeds (z, y)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"z": z[i:i + CALIB_BATCH], "y": y[i:i + CALIB_BATCH]}
                                 for i in range(0, len(z), CALIB_BATCH)])

        def get_next(self):
            return next(self.batches, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process, and notes on BatchNorm biases it leaves in float
    try:
        quantize_static(str(onnx_path), str(out_path), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    except Exception as e:
        raise TinyGANError(f"int8 quantisation of {onnx_path.name} failed ({str(e).splitlines()[0][:200]})") from None
    finally:
        root.setLevel(level)
    _keep_metadata(onnx_path, out_path)


def save_fp16(onnx_path: Path, out_path: Path) -> None:
    """A float16 copy of ``onnx_path`` with float32 inputs and output."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    write_bytes(out_path, model.SerializeToString())
    _keep_metadata(onnx_path, out_path)


def _keep_metadata(src: Path, dst: Path) -> None:
    """Give ``dst`` the metadata_props (the embedded tinygan config) and producer of ``src`` if it lost them."""
    import onnx

    a, b = onnx.load(str(src)), onnx.load(str(dst))
    if {p.key: p.value for p in b.metadata_props} == {p.key: p.value for p in a.metadata_props}:
        return
    del b.metadata_props[:]
    b.metadata_props.extend(a.metadata_props)
    write_bytes(dst, b.SerializeToString())


def features(model: Callable, z: np.ndarray, y: np.ndarray, extractor, desc: str, batch: int = 32) -> np.ndarray:
    """Extractor features [N, d] of the images ``model(z, y)`` (float32 NCHW in [-1, 1]), a batch at a time."""
    import torch
    from tqdm import tqdm

    from tinygan.generate import to_uint8

    out = []
    for i in tqdm(range(0, len(z), batch), desc=desc, unit="batch", leave=False):
        images = to_uint8(model(z[i:i + batch], y[i:i + batch])).transpose(0, 3, 1, 2)
        out.append(extractor(torch.from_numpy(np.ascontiguousarray(images)), need_probs=False)[0])
    return np.concatenate(out)


def quality_cost(reference: np.ndarray, reduced: np.ndarray, seed: int) -> dict:
    """FID and KID between the features of the fp32 model's images and the reduced model's (same z, y):
    FID 0 = the extractor cannot tell them apart. KID here is of paired, nearly identical sets: the unbiased
    estimator drops the within-set diagonals but keeps the cross-set one, so it sits below 0 by about
    2·(mean k(x, x) − mean k(x, x'))/m; read FID for the quality cost."""
    from tinygan.frechet import StatsAccumulator, frechet_distance
    from tinygan.metrics import kid

    stats = []
    for f in (reference, reduced):
        acc = StatsAccumulator(f.shape[1])
        acc.update(f)
        stats.append(acc.finalize())
    return {"fid_vs_fp32": float(frechet_distance(*stats)),
            "kid_vs_fp32": float(kid(reference, reduced, num_subsets=KID_SUBSETS, seed=seed))}
