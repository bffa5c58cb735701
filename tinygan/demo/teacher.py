"""The procedural demo teacher: the demo renderer saved as a TF SavedModel with BigGAN-deep-128's Hub interface.

``save_teacher(path)`` writes a SavedModel directory that ``tensorflow_hub.load(path)`` reads (signature
"default": z [N,128], y [N,1000], truncation -> {"default": [N,128,128,3] in [-1,1]}), byte-identical for the
same code whatever ran before in the process, with the teacher's description of itself
(``tinygan.teacher.DESCRIPTION``) inside: it has no published size.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from tinygan.demo.render import render
from tinygan.io import write_json
from tinygan.teacher import DESCRIPTION, N_CLASSES, RESOLUTION, Z_DIM

# What the teacher says about itself (read by tinygan.teacher.describe); the source is what metrics.json's
# ``teacher_figures`` shows.
ABOUT = {"name": "procedural demo teacher", "g_params": None, "g_macs": None,
         "source": "procedural demo teacher, n/a"}


class DemoTeacher(tf.Module):
    """A stand-in for BigGAN-deep-128: same inputs and output, drawn by `render` at 128x128."""

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, Z_DIM], tf.float32, name="z"),
        tf.TensorSpec([None, N_CLASSES], tf.float32, name="y"),
        tf.TensorSpec([], tf.float32, name="truncation"),
    ])
    def __call__(self, z, y, truncation):
        img = render(z, y, truncation, RESOLUTION, RESOLUTION)
        return {"default": tf.ensure_shape(img, [None, RESOLUTION, RESOLUTION, 3])}


def save_teacher(path: str | os.PathLike) -> None:
    """Save the demo teacher as a SavedModel directory readable by ``tensorflow_hub.load(path)``.

    ``hub.load(path).signatures["default"](z=..., y=..., truncation=...)["default"]`` gives
    float32 [N,128,128,3] in [-1, 1]; ``DESCRIPTION`` in it holds ``ABOUT``. Written into a temp dir beside
    ``path`` and renamed into place.
    The same code gives the same bytes, whatever ran before in the process (see _canonical_saved_model).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = None
    try:
        module = DemoTeacher()
        tf.saved_model.save(module, str(tmp), signatures={"default": module.__call__})
        _canonical_saved_model(tmp)
        write_json(tmp / DESCRIPTION, ABOUT)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


_TRACED_NAME = re.compile(r"^__inference_(.+)_(\d+)$")


def _canonical_saved_model(export_dir: Path) -> None:
    """Make a freshly saved SavedModel's bytes depend only on the model, not on the saving process.

    TF names every traced function ``__inference_<name>_<uid>`` with a process-wide counter, so the same
    model saved after other tracing (or twice in one process) gets other names. They are renamed to
    ``__inference_<name>_<k>`` (k numbers functions of the same name in trace order; TF renames functions
    on load anyway), the function library is sorted by name and saved_model.pb rewritten deterministically.
    fingerprint.pb (hashes plus a random UUID, read only for TF's load metrics; loading works without it,
    as for SavedModels from before TF 2.12) is removed.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    pb = export_dir / "saved_model.pb"
    model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    by_name: dict[str, list[tuple[int, str]]] = {}
    for graph in model.meta_graphs:
        for fdef in graph.graph_def.library.function:
            m = _TRACED_NAME.match(fdef.signature.name)
            if m:
                by_name.setdefault(m.group(1), []).append((int(m.group(2)), fdef.signature.name))
    rename = {old: f"__inference_{name}_{k}" for name, olds in by_name.items()
              for k, (_, old) in enumerate(sorted(olds))}
    rename = {old: new for old, new in rename.items() if old != new}
    _rename_strings(model, lambda s: rename.get(s, s))
    for graph in model.meta_graphs:
        lib = graph.graph_def.library
        fdefs = sorted((type(f).FromString(f.SerializeToString()) for f in lib.function),
                       key=lambda f: f.signature.name)
        del lib.function[:]
        lib.function.extend(fdefs)
    data = model.SerializeToString(deterministic=True)
    left = [old for old in rename if old.encode() in data]
    if left:  # a name stored somewhere other than a string field: a TF change this code must follow
        raise RuntimeError(f"saving the demo teacher: traced function names {left[:3]} were not renamed")
    pb.write_bytes(data)
    (export_dir / "fingerprint.pb").unlink(missing_ok=True)


def _rename_strings(msg, rename) -> None:
    """Apply ``rename`` to every string in a protobuf message: fields, repeated fields, map keys and values."""
    for field, value in msg.ListFields():
        if isinstance(value, str):
            setattr(msg, field.name, rename(value))
        elif hasattr(value, "ListFields"):
            _rename_strings(value, rename)
        elif hasattr(value, "items"):  # a map field
            entries = [(rename(k) if isinstance(k, str) else k, value[k]) for k in list(value)]
            entries = [(k, type(v).FromString(v.SerializeToString()) if hasattr(v, "ListFields")
                        else rename(v) if isinstance(v, str) else v) for k, v in entries]
            value.clear()
            for k, v in entries:
                if hasattr(v, "ListFields"):
                    _rename_strings(v, rename)
                    value[k].CopyFrom(v)
                else:
                    value[k] = v
        elif not isinstance(value, (bytes, bool, int, float)):  # a repeated field
            for i, item in enumerate(value):
                if isinstance(item, str):
                    value[i] = rename(item)
                elif hasattr(item, "ListFields"):
                    _rename_strings(item, rename)

