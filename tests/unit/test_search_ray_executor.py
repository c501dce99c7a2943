"""edgehad.search.ray_executor without a cluster: the address check, the device resource, the moved paths.

The executor itself runs on a real local cluster in tests/e2e/test_search_ray.py.
"""

from __future__ import annotations

import sys

import pytest

from edgehad.core.errors import UserInputError
from edgehad.search.ray_executor import LOCAL_DEVICE, _moved, check_address, device_resource


@pytest.mark.parametrize("address, said", [
    ("", "`ray` must be auto or a Ray cluster's address host:port (the address `ray start` prints on the head node)"),
    ("10.0.0.5", "`ray` 10.0.0.5: give auto or the cluster's address host:port (the address `ray start` prints on "
                 "the head node, e.g. 10.0.0.5:6379)"),
    ("10.0.0.5:70000", "`ray` 10.0.0.5:70000: give auto or the cluster's address host:port"),
    ("ray://10.0.0.5:10001", "`ray` ray://10.0.0.5:10001 is a Ray Client address: run the search on a node of the "
                             "cluster and give its GCS address host:port (or auto)"),
])
def test_a_bad_address_is_one_line(address, said):
    with pytest.raises(UserInputError) as info:
        check_address(address)
    assert str(info.value).startswith(said)


def test_good_addresses_pass_as_given():
    assert check_address(" auto ") == "auto"
    assert check_address("127.0.0.1:6379") == "127.0.0.1:6379"
    assert check_address("[::1]:6379") == "[::1]:6379"


def test_without_ray_the_address_check_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the extra is not installed
    with pytest.raises(UserInputError) as info:
        check_address("auto")
    assert str(info.value) == "`ray` needs Ray, which is not installed here: pip install 'edgehad[ray]'"


@pytest.mark.parametrize("target, host, timed, resource", [
    (None, None, False, None),                       # latency not asked: no device
    (None, None, True, LOCAL_DEVICE),                # local: this node's board
    ("local", None, True, LOCAL_DEVICE),
    ("emulated-aarch64", None, True, LOCAL_DEVICE),  # qemu on this node
    ("rpi4", None, True, None),                      # roofline estimate, computed where the trial converts
    ("rpi4", "ssh://pi@10.0.0.7", True, "edgehad-device:ssh://pi@10.0.0.7"),
    (None, "pi5", True, "edgehad-device:pi5"),
])
def test_the_device_resource_a_timing_holds(target, host, timed, resource):
    assert device_resource(target, host, timed) == resource


def test_record_paths_move_from_the_node_folder_to_the_search_folder():
    record = {"number": 3, "recipe": "/tmp/edgehad-trial-x/3/recipe.toml",
              "files": ["/tmp/edgehad-trial-x/3/files/model.onnx", "/elsewhere/a.onnx"],
              "objective_file": "/tmp/edgehad-trial-x/3/files/model.onnx", "reason": "/tmp/edgehad-trial-x/30/x",
              "metrics": {"size_kb": 1.0}}
    moved = _moved(record, "/tmp/edgehad-trial-x/3", "/out/trials/3")
    assert moved == {**record, "recipe": "/out/trials/3/recipe.toml",
                     "files": ["/out/trials/3/files/model.onnx", "/elsewhere/a.onnx"],
                     "objective_file": "/out/trials/3/files/model.onnx"}
