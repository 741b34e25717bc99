"""benchmarks/run.py's tables and verdicts against the matmul peak and the length-grouped HF loop."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.conftest import REPO


def load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_run", REPO / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def contender(name: str, samples: float, tokens: float, gflops: float) -> dict[str, float | str]:
    return {
        "name": name,
        "samples_per_s": samples,
        "tokens_per_s": tokens,
        "padded_tokens_per_s": tokens * 1.1,
        "padding_share": 0.09,
        "gflops_per_s": gflops,
    }


def test_torch_verdicts_against_the_peak_and_the_fastest_grouped_loop() -> None:
    run = load_run()
    peak = run.Outcome(run.PEAK, ["matmul_peak.py"], report={"peaks": {"fp32": 200.0}, "rows": []})
    torch = run.Outcome(
        "torch training throughput",
        ["train_throughput.py"],
        report={
            "results": [
                contender("zoo torch", 100.0, 1400.0, 90.0),
                contender("HF dynamic (sdpa)", 30.0, 420.0, 60.0),
                contender("HF grouped (eager)", 80.0, 1000.0, 70.0),
                contender("HF grouped (sdpa)", 90.0, 1250.0, 80.0),
            ],
            "ratios": {"HF dynamic (sdpa)": 3.33, "HF grouped (eager)": 1.4, "HF grouped (sdpa)": 1.12},
            "targets": {
                "HF dynamic (sdpa)": {"min": 1.3, "pass": True, "metric": "samples/s"},
                "HF grouped (eager)": {"min": 1.2, "pass": True, "metric": "real tokens/s"},
                "HF grouped (sdpa)": {"min": 1.2, "pass": False, "metric": "real tokens/s"},
            },
        },
    )
    run.throughput_verdicts(torch)
    run.grouped_verdict(torch)
    run.peak_verdict(torch, run.peaks_of([peak]))
    rows = {what.split(" (")[0]: (value, target, passed) for what, value, target, passed in torch.verdicts}
    assert rows["torch training throughput: HF dynamic"] == ("3.33x", ">= 1.3x", True)
    # against the faster grouped loop (sdpa): 1400 / 1250 real tokens/s
    assert rows["torch fine-tune vs length-grouped HF, real tokens/s"] == ("1.12x", ">= 1.2x", False)
    assert rows["torch fine-tune, share of the fp32 matmul peak"] == ("45.0%", ">= 50%", False)
    assert len(torch.verdicts) == 3  # the grouped loops' own ratios are not repeated

    table = run.throughput_table(torch, {"fp32": 200.0})
    assert table[0].startswith("| contender | samples/s | real tokens/s | padded tokens/s |")
    assert table[2] == "| zoo torch | 100.0 | 1400 | 1540 | 9% | 90.0 | 45% |"
    assert run.peak_table(peak)[-1] == "| **fp32 peak** | best of the shapes | **200.0** | |"


def test_a_script_without_the_new_fields_shows_dashes() -> None:
    run = load_run()
    old = run.Outcome("paddle", ["x"], report={"results": [{"name": "zoo paddle", "samples_per_s": 46.5}]})
    assert run.throughput_table(old, {})[2] == "| zoo paddle | 46.5 | — | — | — | — | — |"
