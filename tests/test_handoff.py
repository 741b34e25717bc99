"""One model through four frameworks: each step reads the previous step's portable checkpoint.

fine-tune on torch -> TinyBERT distillation on paddle -> DynaBERT width on mindspore -> export
on torch, each ``zoo`` command in a process of its own (paddle and mindspore cannot share one).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import WIDTH_TRAIN, RecipeWriter

ZOO = str(Path(sys.executable).parent / "zoo")
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("zoo_paddle", "zoo_mindspore")),
    reason="needs the paddle and mindspore backends",
)


def zoo(*args: str) -> dict[str, Any]:
    """Run a zoo command in a fresh process; fail with its stderr if it fails."""
    done = subprocess.run([ZOO, *args], capture_output=True, text=True)
    assert done.returncode == 0, f"zoo {' '.join(args)}:\n{done.stderr[-2000:]}"
    return {"stdout": done.stdout}


def write(path: Path, recipe: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_torch_then_paddle_then_mindspore_then_torch(
    write_recipe: RecipeWriter, sst2_dir: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    zoo("run", str(write_recipe(name="teacher")), "--backend", "torch", "-q")
    teacher = tmp_path / "runs" / "teacher"
    common = {
        "task": "sst2",
        "data": {"dir": str(sst2_dir), "max_seq_length": 32},
        "eval": {"batch_size": 32},
    }
    distill = write(
        tmp_path / "distill.yaml",
        {
            "kind": "distill",
            "name": "student",
            **common,
            "teacher": str(teacher),
            "student": {"model": str(tiny_model_dir), "num_hidden_layers": 1, "init": "teacher_layers"},
            "stages": [
                {"kind": "intermediate", "train": WIDTH_TRAIN},
                {"kind": "prediction", "train": WIDTH_TRAIN},
            ],
            "output_dir": str(tmp_path / "runs" / "student"),
        },
    )
    zoo("run", str(distill), "--backend", "paddle", "-q")
    width = write(
        tmp_path / "width.yaml",
        {
            "kind": "width",
            "name": "dyna",
            **common,
            "teacher": str(tmp_path / "runs" / "student"),
            "width": {"width_mult_list": [1.0, 0.5], "importance": {"examples": 32}},
            "train": WIDTH_TRAIN,
            "output_dir": str(tmp_path / "runs" / "dyna"),
        },
    )
    zoo("run", str(width), "--backend", "mindspore", "-q")
    dyna = tmp_path / "runs" / "dyna"
    out = zoo(
        "export", str(dyna), "--width-mult", "0.5", "--backend", "torch", "-f", "portable", "-f", "onnx"
    )
    assert "with the torch backend" in out["stdout"]

    metas = [
        json.loads((tmp_path / "runs" / r / "best" / "zoo.json").read_text())
        for r in ("teacher", "student", "dyna")
    ]
    assert [m["backend"] for m in metas] == ["torch", "paddle", "mindspore"]
    assert metas[1]["teacher"].startswith(str(teacher)) and metas[2]["teacher"].startswith(
        str(tmp_path / "runs" / "student")
    )
    reported = json.loads((dyna / "result.json").read_text())["final"]["accuracy@0.5"]
    exported = json.loads((dyna / "export" / "width-0.5" / "export.json").read_text())
    assert [e["metrics"]["accuracy"] for e in exported] == [reported, reported]
    assert all(e["max_abs_diff"] <= 1e-4 for e in exported)
