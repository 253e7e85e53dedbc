"""dassl.engine.precision: one place for the fp16 / fp32 / amp / bf16 flags."""

import dataclasses

import pytest
import torch

from dassl.engine import SUPPORTED_PRECISIONS, Precision, resolve_precision
from dassl.engine import precision as precision_module

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees a process that has not warned yet, outside the CPU half mode unless it asks."""
    monkeypatch.setattr(precision_module, "_warned_fallbacks", set())
    monkeypatch.delenv(precision_module.CPU_HALF_ENV, raising=False)


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


# ---------------------------------------------------------------------------- DASSL_CPU_HALF=1


@pytest.mark.parametrize("value", ["0", "", "yes"])
def test_the_cpu_half_mode_is_off_unless_set_to_1(monkeypatch, value):
    monkeypatch.setenv("DASSL_CPU_HALF", value)
    assert resolve_precision("fp16", CPU).name == "fp32"


@pytest.mark.parametrize(
    "prec, weight_dtype, autocast_dtype",
    [("fp16", torch.float16, None), ("amp", torch.float32, torch.float16)],
)
def test_cpu_half_mode_keeps_fp16_and_amp_on_the_cpu_as_on_cuda(
    monkeypatch, capsys, prec, weight_dtype, autocast_dtype
):
    monkeypatch.setenv("DASSL_CPU_HALF", "1")
    precision = resolve_precision(prec, CPU)
    assert precision == resolve_precision(prec, torch.device("cuda"))
    assert (precision.weight_dtype, precision.autocast_dtype) == (weight_dtype, autocast_dtype)
    resolve_precision(prec, CPU)
    assert capsys.readouterr().out == (
        f"Note: DASSL_CPU_HALF=1: precision {prec} runs on the CPU as on a GPU (a test and debug mode: slow; "
        "results are not those of a GPU)\n"
    )  # once per flag value and process
    assert resolve_precision("bf16", CPU).name == "bf16" and resolve_precision("fp32", CPU).name == "fp32"


def test_cpu_half_mode_amp_autocasts_to_float16_and_scales_the_loss(monkeypatch):
    monkeypatch.setenv("DASSL_CPU_HALF", "1")
    precision = resolve_precision("amp", CPU)
    with precision.autocast(CPU):
        assert (torch.randn(4, 3) @ torch.randn(3, 2)).dtype == torch.float16
    scaler = precision.grad_scaler(CPU)
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    with precision.autocast(CPU):
        loss = 0.25 * (torch.ones(1, 3) @ weight).float().sum()  # a float32 loss, as cross-entropy gives
    scaler.scale(loss).backward()
    assert weight.grad.dtype == torch.float32 and torch.equal(weight.grad, torch.full((3,), 0.25 * 2.0**16))
    scaler.step(optimizer)  # unscales: one SGD step with the true gradient 0.25
    scaler.update()
    torch.testing.assert_close(weight.detach(), torch.full((3,), 0.975))
    assert resolve_precision("fp16", CPU).grad_scaler(CPU) is None
