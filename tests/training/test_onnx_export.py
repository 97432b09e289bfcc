"""ONNX export: graph shape, card, parity with PyTorch, and the runtime's checks on load."""

import pytest

pytest.importorskip("torch", reason="needs torch (the training side; Python 3.11 here)")

import json
import shutil

import numpy as np
import onnx
import torch

from animateme.diffusion.bench import torch_model_from_onnx
from animateme.diffusion.export import example_inputs, parity
from animateme.diffusion.train import ema_model, load_checkpoint
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.runtime import file_sha256, load_runtime
from diffusion_fixture import LABELS, trained_fixture


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return trained_fixture(tmp_path_factory.mktemp("export"), steps=60)


def test_graph_has_opset_17_dynamic_batch_and_spirals_inside(tiny):
    graph = onnx.load(str(tiny["onnx"]))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    inputs = {i.name: i for i in graph.graph.input}
    assert set(inputs) == {"x_t", "t", "signal"}                      # no spiral input: they are constants
    batch = inputs["x_t"].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value                     # symbolic batch
    gathers = [n for n in graph.graph.node if n.op_type == "Gather"]
    assert len(gathers) >= 4                                          # one per spiral layer + head


def test_card_describes_the_model(tiny):
    card = json.loads(tiny["onnx"].with_suffix(".json").read_text())
    assert card["labels"] == list(LABELS)
    assert card["template_fingerprint"] == tiny["fingerprint"]
    assert card["schedule"]["steps"] == 1000 and card["opset"] >= 17
    assert len(card["normalisation"]["scale"]) == card["num_vertices"] == 64
    assert min(card["normalisation"]["scale"]) > 0
    assert card["sha256"] == file_sha256(tiny["onnx"])
    assert card["parity"]["epsilon_max_rel_diff"] <= 1e-4 and card["parity"]["x0_max_rel_diff"] <= 1e-4


@pytest.mark.parametrize("batch", [1, 5, 33])
def test_parity_with_pytorch_at_any_batch(tiny, batch):
    model = ema_model(load_checkpoint(tiny["checkpoint"]), np.load(tiny["template"])["spirals"])
    report = parity(model, tiny["onnx"], batch=batch, seed=batch)
    print(f"batch {batch}: {report}")
    assert report["epsilon_max_rel_diff"] <= 1e-4 and report["x0_max_rel_diff"] <= 1e-4
    assert report["x0_max_abs_diff"] < 1e-4


def test_bench_rebuilds_the_same_torch_model_from_the_onnx_file(tiny):
    original = ema_model(load_checkpoint(tiny["checkpoint"]), np.load(tiny["template"])["spirals"])
    card = json.loads(tiny["onnx"].with_suffix(".json").read_text())
    rebuilt = torch_model_from_onnx(tiny["onnx"], card, np.load(tiny["template"])["spirals"])
    inputs = example_inputs(original, 3)
    with torch.no_grad():
        assert torch.equal(original(*inputs)[1], rebuilt(*inputs)[1])


def test_runtime_reports_its_provider(tiny):
    runtime = load_runtime(tiny["onnx"], tiny["fingerprint"], device="auto")
    assert runtime.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert load_runtime(tiny["onnx"], tiny["fingerprint"], device="cpu").provider == "CPUExecutionProvider"


def copy_model(tiny, folder):
    onnx_path = folder / "copy.onnx"
    shutil.copy(tiny["onnx"], onnx_path)
    shutil.copy(tiny["onnx"].with_suffix(".json"), onnx_path.with_suffix(".json"))
    return onnx_path


def test_missing_model_or_card(tiny, tmp_path):
    with pytest.raises(AnimateMeError, match="not found"):
        load_runtime(tmp_path / "nothing.onnx", tiny["fingerprint"])
    path = copy_model(tiny, tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(AnimateMeError, match="card .* is missing"):
        load_runtime(path, tiny["fingerprint"])


def test_truncated_model_fails_its_checksum(tiny, tmp_path):
    path = copy_model(tiny, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AnimateMeError, match="checksum"):
        load_runtime(path, tiny["fingerprint"])


def test_model_for_another_template(tiny, tmp_path):
    with pytest.raises(AnimateMeError, match="trained for template"):
        load_runtime(tiny["onnx"], "v64-someothertemplate")
    with pytest.raises(AnimateMeError, match="needs the template"):
        load_runtime(tiny["onnx"], None)


def test_damaged_card_and_unknown_device(tiny, tmp_path):
    path = copy_model(tiny, tmp_path)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(AnimateMeError, match="unreadable"):
        load_runtime(path, tiny["fingerprint"])
    with pytest.raises(AnimateMeError, match="unknown device"):
        load_runtime(tiny["onnx"], tiny["fingerprint"], device="tpu")


def test_export_refuses_another_template(tiny, tmp_path):
    from animateme.diffusion.export import export

    other = tmp_path / "template.npz"
    data = dict(np.load(tiny["template"]))
    data["fingerprint"] = np.array("v64-different0000000")
    np.savez(other, **data)
    with pytest.raises(AnimateMeError, match="trained for template"):
        export(tiny["checkpoint"], other, tmp_path / "m.onnx")


def test_bench_json_times_both_runtimes(tiny, capsys):
    from animateme.cli import main

    code = main(["bench", "--model", str(tiny["onnx"]), "--template", str(tiny["template"]), "--frames", "8",
                 "--repeats", "1", "--skip-paper", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["frames"] == 8 and report["provider"] == "CPUExecutionProvider"
    assert report["fast_ddim_seconds"]["onnxruntime"] > 0 and report["fast_ddim_seconds"]["torch_eager"] > 0
    assert report["matmul_peak_gflops_per_second"] > 0 and report["paper_ddpm_seconds"]["onnxruntime"] is None
