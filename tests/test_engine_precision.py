"""dassl.engine.precision: one place for the fp16 / fp32 / amp / bf16 flags."""

import dataclasses

import pytest
import torch

from dassl.engine import SUPPORTED_PRECISIONS, Precision, resolve_precision
from dassl.engine import precision as precision_module

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees a process that has not warned yet."""
    monkeypatch.setattr(precision_module, "_warned_fallbacks", set())


def test_supported_values():
    assert SUPPORTED_PRECISIONS == ("fp16", "fp32", "amp", "bf16")


@pytest.mark.parametrize("bad", ["fp64", "FP16", "", "half"])
def test_unknown_precision_names_the_allowed_values(bad):
    with pytest.raises(ValueError) as err:
        resolve_precision(bad, CPU)
    assert repr(bad) in str(err.value)
    assert "fp16, fp32, amp, bf16" in str(err.value)


@pytest.mark.parametrize("prec", ["fp16", "amp"])
def test_cpu_falls_back_to_fp32_with_one_warning_line_per_process(prec, capsys):
    first = resolve_precision(prec, CPU)
    second = resolve_precision(prec, "cpu")
    assert first == second == Precision("fp32", torch.float32, None)
    out = capsys.readouterr().out
    assert out == f"Warning: precision {prec} is not supported on the CPU; using fp32 instead\n"


def test_each_fallback_warns_once(capsys):
    for prec in ("fp16", "amp", "fp16", "amp"):
        resolve_precision(prec, CPU)
    assert len(capsys.readouterr().out.splitlines()) == 2


@pytest.mark.parametrize(
    "prec, weight_dtype, autocast_dtype",
    [("fp32", torch.float32, None), ("bf16", torch.float32, torch.bfloat16)],
)
def test_fp32_and_bf16_stay_on_cpu(prec, weight_dtype, autocast_dtype, capsys):
    precision = resolve_precision(prec, CPU)
    assert (precision.name, precision.weight_dtype, precision.autocast_dtype) == (
        prec,
        weight_dtype,
        autocast_dtype,
    )
    assert capsys.readouterr().out == ""


def test_precision_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolve_precision("fp32", CPU).name = "fp16"


@pytest.mark.parametrize(
    "prec, weight_dtype, autocast_dtype",
    [
        ("fp16", torch.float16, None),
        ("fp32", torch.float32, None),
        ("amp", torch.float32, torch.float16),
        ("bf16", torch.float32, torch.bfloat16),
    ],
)
def test_cuda_table(prec, weight_dtype, autocast_dtype, capsys):
    # resolve_precision only reads the device type, so this needs no GPU.
    precision = resolve_precision(prec, torch.device("cuda"))
    assert (precision.name, precision.weight_dtype, precision.autocast_dtype) == (
        prec,
        weight_dtype,
        autocast_dtype,
    )
    assert capsys.readouterr().out == ""


def test_bf16_autocast_runs_matmul_in_bfloat16_on_cpu():
    precision = resolve_precision("bf16", CPU)
    a, b = torch.randn(4, 3), torch.randn(3, 2)
    with precision.autocast(CPU):
        product = a @ b
    assert product.dtype == torch.bfloat16
    torch.testing.assert_close(product.float(), a @ b, atol=0.05, rtol=0.02)


def test_fp32_autocast_is_a_null_context():
    with resolve_precision("fp32", CPU).autocast(CPU):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == torch.float32


def test_grad_scaler_only_for_amp_on_cuda():
    amp = Precision("amp", torch.float32, torch.float16)
    assert amp.grad_scaler(CPU) is None
    assert resolve_precision("bf16", CPU).grad_scaler(CPU) is None
    assert resolve_precision("fp32", CPU).grad_scaler("cuda") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_cuda_gives_a_torch_amp_grad_scaler_and_float16_autocast():
    cuda = torch.device("cuda")
    precision = resolve_precision("amp", cuda)
    scaler = precision.grad_scaler(cuda)
    assert isinstance(scaler, torch.amp.GradScaler)
    with precision.autocast(cuda):
        assert (torch.randn(4, 4, device=cuda) @ torch.randn(4, 4, device=cuda)).dtype == torch.float16
