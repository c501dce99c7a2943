""".pt2 files that carry a pickle payload, for the tests that prove none of them runs.

Each payload's ``__reduce__`` opens (creates) a marker file: if the marker
exists after a load, code from the file ran. ``CARRIERS`` names every member
of a ``torch.export`` archive that torch 2.13 unpickles; ``write_evil_pt2``
builds a real archive with ``torch.export.save`` and replaces that member.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

CARRIERS = ("sample-inputs-raw", "sample-inputs-torch-save", "weight-use-pickle", "opaque-constant")


class Payload:
    """Unpickling this creates ``marker``: the proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_good_pt2(path: Path) -> Path:
    import torch

    class Small(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return torch.relu(self.fc(x))

    torch.manual_seed(0)
    torch.export.save(torch.export.export(Small().eval(), (torch.randn(1, 4),)), str(path))
    return path


def write_evil_pt2(path: Path, carrier: str, marker: Path) -> Path:
    """A real .pt2 whose ``carrier`` member is replaced by a pickle that creates ``marker``."""
    import torch

    good = write_good_pt2(path.with_name(path.stem + "-good.pt2"))
    raw = pickle.dumps(Payload(str(marker)))
    buf = io.BytesIO()
    torch.save(Payload(str(marker)), buf)
    saved = buf.getvalue()
    with zipfile.ZipFile(good) as zin:
        members = {info.filename: zin.read(info.filename) for info in zin.infolist()}
    root = next(iter(members)).split("/")[0]
    if carrier == "sample-inputs-raw":
        members[f"{root}/data/sample_inputs/model.pt"] = raw
    elif carrier == "sample-inputs-torch-save":
        members[f"{root}/data/sample_inputs/model.pt"] = saved
    elif carrier == "weight-use-pickle":
        cfg_name = f"{root}/data/weights/model_weights_config.json"
        cfg = json.loads(members[cfg_name])
        entry = cfg["config"]["fc.weight"]
        entry["use_pickle"] = True
        members[f"{root}/data/weights/{entry['path_name']}"] = saved
        members[cfg_name] = json.dumps(cfg).encode()
    elif carrier == "opaque-constant":
        cfg_name = f"{root}/data/constants/model_constants_config.json"
        cfg = json.loads(members[cfg_name])
        cfg["config"]["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
        members[f"{root}/data/constants/opaque_obj_0"] = raw
        members[cfg_name] = json.dumps(cfg).encode()
    else:
        raise ValueError(carrier)
    with zipfile.ZipFile(path, "w") as zout:
        for name, data in members.items():
            zout.writestr(name, data)
    good.unlink()
    return path
