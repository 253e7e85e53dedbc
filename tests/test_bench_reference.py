"""Tests for benchmarks/: the reference computation against the project, and the benchmark CLI.

The benchmark's ratios only mean something if (a) and (b) compute the same logits: here the
reference (per-pair loop OT, 77-token text recomputed per forward) must give the project's
logits and gradients on a tiny random CLIP.
"""

import copy
import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from benchmarks import bench_align, measure
from benchmarks.reference import ReferenceALIGN, pair_subset, reference_sinkhorn, reference_token_similarity
from benchmarks.runners import align_settings, count_calls
from benchmarks.synthetic import class_names, synthetic_ot_inputs
from clip.model import build_model
from tests.ot_oracle import reference_group
from tests.tiny_clip import tiny_vit_state_dict
from trainers.align import ALIGNCLIP
from trainers.ot import token_transport_similarity

LOGIT_RTOL = 1e-5  # of the largest logit magnitude
GRAD_RTOL = 1e-4  # of the largest gradient magnitude of each parameter
# Underscores, one to four words: class token counts differ, so the reference's ragged token
# slices (and, for prompts 1..T-1, their "." and EOT) are exercised.
CLASSNAMES = ["golden_retriever", "cat", "red sports car", "a very small bird"]


def _models(seed=0):
    """A tiny fp32 CLIP, the project's ALIGNCLIP on it, and the reference with a copy of its prompts."""
    clip_model = build_model(tiny_vit_state_dict(seed=seed)).float().eval().requires_grad_(False)
    settings = align_settings("fp32", depth=2, ot_memory_mb=1024.0)
    torch.manual_seed(seed)
    project = ALIGNCLIP(settings, CLASSNAMES, clip_model)
    reference = ReferenceALIGN(settings, CLASSNAMES, clip_model, copy.deepcopy(project.prompt_learner))
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed + 1))
    return project, reference, images


def _assert_close_to_max(actual, expected, rtol, what):
    scale = expected.abs().max()
    error = (actual - expected).abs().max()
    assert error <= rtol * scale, f"{what}: max |difference| {error:.3g} > {rtol} x {scale:.3g}"


def test_reference_gives_the_project_evaluation_logits():
    project, reference, images = _models()
    text_encodings = count_calls(project, "encode_text")
    with torch.no_grad(), project.cached_text_features():
        expected = project(images)
        again = project(images)
    with torch.no_grad():
        logits = reference(images)
    assert len(text_encodings) == 1  # evaluation: text once, as the benchmark's (a) assumes
    _assert_close_to_max(logits, expected, LOGIT_RTOL, "evaluation logits")
    torch.testing.assert_close(again, expected)
    stats = reference.last_stats
    assert stats.pairs_total == stats.pairs_solved == 2 * len(CLASSNAMES)
    # Not a trivial problem: the token-level groups need several Sinkhorn iterations.
    assert min(stats.token_iterations) > 2 and stats.prompt_iterations >= 2


def test_reference_gives_the_project_training_logits_and_gradients():
    project, reference, images = _models(seed=3)
    labels = torch.tensor([1, 3])
    expected = project(images)
    logits = reference(images)
    _assert_close_to_max(logits.detach(), expected.detach(), LOGIT_RTOL, "training logits")
    F.cross_entropy(expected, labels).backward()
    F.cross_entropy(logits, labels).backward()
    project_params = dict(project.prompt_learner.named_parameters())
    reference_params = dict(reference.prompt_learner.named_parameters())
    assert project_params.keys() == reference_params.keys()
    for name, param in project_params.items():
        assert param.grad is not None and param.grad.abs().max() > 0, name
        _assert_close_to_max(reference_params[name].grad, param.grad, GRAD_RTOL, f"gradient of {name}")


def test_reference_features_and_token_similarities_equal_the_project_ones():
    """Stage by stage: the token term moves the logits little, so it is compared on its own."""
    project, reference, images = _models(seed=2)
    with torch.no_grad():
        text = project.encode_text()
        txt_global, txt_tokens = reference.encode_text()
        img_global, img_tokens = project.encode_image(images)
        s_tok_project = token_transport_similarity(img_tokens, text.tokens, text.token_mask)
        s_tok_reference, _ = reference_token_similarity(img_tokens, txt_tokens, eps=0.1, max_iter=100, thresh=0.01)
    torch.testing.assert_close(txt_global, text.global_, rtol=0, atol=1e-5)
    for c, tokens in enumerate(txt_tokens):
        length = int(text.token_mask[c, 0].sum())
        assert text.token_mask[c, :, :length].all() and length == tokens.shape[1]
        torch.testing.assert_close(tokens, text.tokens[c, :, :length], rtol=0, atol=1e-5)
    torch.testing.assert_close(s_tok_reference, s_tok_project, rtol=0, atol=1e-6)
    assert s_tok_reference.std() > 1e-3  # the pairs differ: a wrong slice or pair would show


def test_reference_text_side_uses_the_full_context_and_the_reference_slice():
    _, reference, _ = _models()
    assert reference.tokenized.shape == (len(CLASSNAMES) * 4, 77)
    # "a photo of a {name}." : SOS + 4 prompt tokens + name tokens, "." and EOT dropped.
    assert reference.kept_lengths == [5 + 2, 5 + 1, 5 + 3, 5 + 4]
    global_, tokens = reference.encode_text()
    assert global_.shape == (len(CLASSNAMES), 4, 32)
    assert [tuple(t.shape) for t in tokens] == [(4, length, 32) for length in reference.kept_lengths]
    torch.testing.assert_close(tokens[0].norm(dim=-1), torch.ones(4, 7))


def test_reference_rejects_the_project_only_switches():
    project, _, _ = _models()
    settings = align_settings("fp32", depth=2, ot_memory_mb=1024.0)
    changed = [
        ("token_cost", replace(settings, ot=replace(settings.ot, token_cost="distance"))),
        ("text_tokens", replace(settings, text_tokens="per_prompt")),
        ("token_weight", replace(settings, ot=replace(settings.ot, token_weight=0.5))),
    ]
    for name, other in changed:
        with pytest.raises(ValueError, match=name):
            ReferenceALIGN(other, CLASSNAMES, project.clip, project.prompt_learner)


def test_reference_sinkhorn_follows_the_loop_oracle():
    generator = torch.Generator().manual_seed(5)
    sim = F.normalize(torch.randn(16) + 0.7 * torch.randn(6, 30, 16, generator=generator), dim=-1)
    cost = 1.0 - torch.einsum("smd,snd->smn", sim, sim[:, :9])
    plan, iterations = reference_sinkhorn(cost.double(), 0.1, 100, 0.01)
    oracle_plans, oracle_iterations = reference_group(list(cost), 0.1, 100, 0.01)
    assert iterations == oracle_iterations > 2
    torch.testing.assert_close(plan, torch.stack(oracle_plans), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(plan.sum((1, 2)), torch.ones(6, dtype=torch.float64))


def test_token_loop_subset_solves_the_chosen_pairs_and_extrapolates_linearly():
    inputs = synthetic_ot_inputs(3, 5, 2, 20, 32, [6, 7, 8, 9, 10], seed=1)
    solver = dict(eps=0.1, max_iter=100, thresh=0.01)
    full, full_stats = reference_token_similarity(inputs["img_tokens"], inputs["txt_token_list"], **solver)
    part, stats = reference_token_similarity(inputs["img_tokens"], inputs["txt_token_list"], max_pairs=4, **solver)
    pairs = pair_subset(15, 4)
    assert len(pairs) == 4 and pairs == sorted(set(pairs)) and pairs == pair_subset(15, 4)
    assert (full_stats.pairs_solved, stats.pairs_total, stats.pairs_solved) == (15, 15, 4)
    flat_full, flat_part = full.view(15, 2, 2), part.view(15, 2, 2)
    torch.testing.assert_close(flat_part[pairs], flat_full[pairs])
    others = [k for k in range(15) if k not in pairs]
    torch.testing.assert_close(flat_part[others], flat_full[pairs].mean(0).expand(11, 2, 2))
    assert stats.extrapolated and not full_stats.extrapolated
    assert stats.unsolved_pairs_seconds() == pytest.approx(11 * stats.token_loop_seconds / 4)
    assert full_stats.unsolved_pairs_seconds() == 0.0


def test_synthetic_names_and_features_have_the_documented_structure():
    lengths = [6, 7, 8, 9, 10, 11, 12]
    _, reference, _ = _models()
    assert (
        ReferenceALIGN(reference.settings, class_names(14), reference.clip, reference.prompt_learner).kept_lengths
        == lengths * 2
    )
    inputs = synthetic_ot_inputs(4, 7, 2, 50, 512, lengths, seed=0)
    sim = torch.einsum("bvpd,ctld->bcvtpl", inputs["img_tokens"], inputs["txt_tokens"])
    real = sim[inputs["txt_token_mask"][None, :, None, :, None, :].expand_as(sim)]
    assert 0.15 < real.mean() < 0.3 and real.quantile(0.01) > 0.0 and real.quantile(0.99) < 0.5
    global_sim = torch.einsum("bvd,ctd->bcvt", inputs["img_global"], inputs["txt_global"])
    own_class = global_sim[torch.arange(4), torch.arange(4)]
    assert 0.2 < global_sim.mean() < 0.3 and own_class.mean() > global_sim.mean() + 0.03
    assert inputs["txt_tokens"][~inputs["txt_token_mask"]].abs().max() == 0


def test_cli_runs_end_to_end_and_writes_the_report(tmp_path, capsys):
    path = tmp_path / "bench.json"
    bench_align.main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--classes",
            "3",
            "--batch",
            "2",
            "--eval-batches",
            "2",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--ref-max-pairs",
            "4",
            "--json",
            str(path),
        ]
    )
    table = capsys.readouterr().out
    report = json.loads(path.read_text())
    assert {"machine", "settings", "cases", "targets", "command"} <= report.keys()
    assert {"cpu_model", "cpu_cores", "torch"} <= report["machine"].keys()
    assert report["settings"]["dims"]["embed_dim"] == 32 and report["settings"]["ref_max_pairs"] == 4
    assert [case["case"]["measure"] for case in report["cases"]] == ["train", "eval", "ot"]
    for case in report["cases"]:
        project, reference = case["project"], case["reference"]
        for side in (project, reference):
            assert len(side["seconds"]) == 2 and side["median_s"] > 0 and side["memory"]["peak_bytes"] > 0
            assert side["memory_measured_on"] == "warm-up runs"
        assert case["ratio"] == pytest.approx(reference["median_s"] / project["median_s"])
        # B * C = 6 pairs, 4 solved: the reference's times are extrapolated and say so.
        assert reference["extrapolated"] and reference["reference_ot"]["pairs_solved_per_forward"] == 4
    evaluation = report["cases"][1]
    assert evaluation["project"]["text_encoder_calls_per_evaluation"] == 1
    assert evaluation["project"]["images_per_second"] == pytest.approx(4 / evaluation["project"]["median_s"])
    assert "evaluation time (s)" in table and "* extrapolated" in table


def test_presets_define_the_issue_targets():
    options, cases, targets = bench_align.resolve_run(
        bench_align.parse_args(["--preset", "cpu-targets", "--device", "cpu"])
    )
    assert options.dims == bench_align.VIT_B16 and options.depth == 9
    assert {(case.measure, case.classes, case.batch) for case in cases} == {
        ("train", 50, 4),
        ("eval", 100, 4),
        ("ot", 1000, 100),
    }
    assert len(targets) == 4
    ratio_target = next(t for t in targets if t.case.measure == "eval")
    assert ratio_target.check({"ratio": 2.9})["met"] is False and ratio_target.check({"ratio": 3.1})["met"]
    memory_target = next(t for t in targets if t.metric == "project_peak_bytes")
    assert memory_target.check({"project": {"memory": {"peak_bytes": 3 * 2**30}}})["met"] is False
    _, gpu_cases, gpu_targets = bench_align.resolve_run(bench_align.parse_args(["--preset", "gpu", "--device", "cpu"]))
    assert {case.precision for case in gpu_cases} == {"fp16", "bf16"}
    assert {case.classes for case in gpu_cases} == {100, 500, 1000} and len(gpu_targets) == 4


def test_cpu_peak_memory_sees_a_freed_allocation_and_the_sampler_fallback(tmp_path, monkeypatch):
    # Above glibc's mmap threshold, so freed at once and RSS falls back. Large, because part of an
    # allocation can reuse memory that earlier tests of the same process freed but that is still
    # resident (about 12 MB seen under pytest-xdist): that must stay far below the 10% margin.
    block_bytes = 256 * 2**20
    measure.release_freed_heap()
    with measure.PeakMemory("cpu") as memory:
        block = torch.ones(block_bytes // 4)
        del block
    assert memory.method == "VmHWM after clear_refs reset"
    assert memory.as_dict()["peak_increase_bytes"] >= 0.9 * block_bytes
    monkeypatch.setattr(measure, "_CLEAR_REFS", str(tmp_path / "missing" / "clear_refs"))
    measure.release_freed_heap()
    with measure.PeakMemory("cpu") as sampled:
        block = torch.ones(block_bytes // 4)  # still alive at exit, where the sampler reads last
    del block
    assert sampled.method.startswith("VmRSS sampled")
    assert sampled.as_dict()["peak_increase_bytes"] >= 0.9 * block_bytes
