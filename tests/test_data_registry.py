"""The dataset registry is the one list of datasets: a registered spec reaches the config, the schema,
the CLI, the paper labels, fetch, prepare and the loader without other edits, and no other module
lists dataset names or builds the data paths by hand."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest

from ddeqs.cli import build_parser
from ddeqs.config import dataset_dim, load_config
from ddeqs.data import registry
from ddeqs.data.registry import DATASETS, DatasetSpec, fetch_dataset, prepare_dataset, processed_files
from ddeqs.paper.runs import PaperContext
from ddeqs.plan import json_schema

ROOT = Path(__file__).resolve().parents[1]


def _toy_raw(raw_root: Path, params: dict, workers: int, progress: bool):
    """Three classes of 2-D Gaussian clouds of 150-250 points (sizes like MNIST-pc's)."""
    params["class_names"] = ["a", "b", "c"]

    def load(split: str):
        rng = np.random.default_rng(0 if split == "train" else 1)
        n = 12 if split == "train" else 6
        clouds = [rng.normal(i % 3, 1.0, size=(int(rng.integers(150, 251)), 2)) for i in range(n)]
        return clouds, [i % 3 for i in range(n)], [f"{split}-{i}" for i in range(n)], {"source": "toy"}

    return load


def _toy_fetch(raw_root: Path, progress: bool, source: str) -> str:
    return f"toy-3d: fetched into {raw_root} ({source})"


@pytest.fixture
def toys(monkeypatch):
    """Two datasets registered only in the registry: an embedded 2-D stand-in and a paper 3-D one."""
    toy2 = DatasetSpec("toy-2d", 2, 3, "Toy", "mnist", False, True, "test-only 2-D clouds", 0.5, _toy_raw)
    toy3 = DatasetSpec("toy-3d", 3, 5, "Toy3", "modelnet", True, False, "test-only 3-D", 0.7, _toy_raw,
                       fetch=_toy_fetch)
    monkeypatch.setitem(DATASETS, "toy-2d", toy2)
    monkeypatch.setitem(DATASETS, "toy-3d", toy3)
    return toy2, toy3


def test_a_registered_dataset_is_accepted_by_config_schema_cli_and_paper(toys) -> None:
    cfg = load_config(None, ["data.dataset=toy-2d", "task=completion"])
    assert cfg.data.dataset == "toy-2d" and dataset_dim("toy-2d") == 2 and dataset_dim("toy-3d") == 3
    roles_enum = json_schema()["properties"]["roles"]["patternProperties"]["^[a-z0-9]+$"]["enum"]
    assert roles_enum == ["mnist-pc", "modelnet40-s", "digits", "shapes", "toy-2d", "toy-3d"]

    parser = build_parser()
    assert parser.parse_args(["data", "prepare", "toy-2d", "toy-3d"]).names == ["toy-2d", "toy-3d"]
    assert parser.parse_args(["info", "model", "--dataset", "toy-3d"]).dataset == "toy-3d"
    # bench takes the datasets whose spec says paper, and only those
    assert parser.parse_args(["bench", "step", "--dataset", "toy-3d"]).dataset == "toy-3d"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "step", "--dataset", "toy-2d"])

    ctx = PaperContext(roles={"mnist": "toy-2d", "modelnet": "toy-3d"})
    assert (ctx.dataset_label("mnist"), ctx.dataset_label("modelnet")) == ("Toy (embedded)", "Toy3")


def test_a_registered_dataset_is_fetched_prepared_and_loaded_by_its_spec(toys, tmp_path) -> None:
    from ddeqs.data.loader import CloudDataset, dataset_info

    assert fetch_dataset("toy-2d", tmp_path / "raw") == "toy-2d: embedded dataset, nothing to download"
    assert fetch_dataset("toy-3d", tmp_path / "raw", source="idx") == f"toy-3d: fetched into {tmp_path / 'raw'} (idx)"

    root = tmp_path / "proc"
    messages = prepare_dataset("toy-2d", tmp_path / "raw", root, progress=False)
    assert [m.split(":")[0] for m in messages] == [f"wrote {p}" for p in processed_files(root, "toy-2d")]
    assert all(p.is_file() for p in processed_files(root, "toy-2d") + processed_files(root, "toy-2d", ".json"))

    cfg = load_config(None, ["data.dataset=toy-2d", f"data.root={root}", "task=completion"])
    info = dataset_info(cfg)
    assert (info.in_dim, info.num_classes, info.n_train, info.n_test) == (2, 3, 12, 6)
    ds = CloudDataset(cfg, "test")
    assert ds.radius == 0.5  # the spec's partial radius is the default of data.partial_radius
    item = ds[0]
    assert item["points"].dtype == np.float32 and 0 < len(item["points"]) < len(item["target"])


def test_completion_defaults_come_from_the_spec() -> None:
    assert [DATASETS[n].partial_radius for n in ("mnist-pc", "digits", "modelnet40-s", "shapes")] == [0.6, 0.6, 0.8, 0.8]
    assert DATASETS["modelnet40-s"].completion_classes == DATASETS["shapes"].completion_classes
    assert len(DATASETS["shapes"].completion_classes) == 8 and DATASETS["mnist-pc"].completion_classes is None
    assert processed_files("data/processed", "digits") == [Path("data/processed/digits/train.npz"),
                                                           Path("data/processed/digits/test.npz")]


# -- one list -------------------------------------------------------------------------------------

#: Code literals of a dataset name allowed outside the registry: uses of one dataset, not lists of them.
USES = {
    ("ddeqs/config.py", "digits"),  # data.dataset's default value (config.py owns every default)
    ("ddeqs/data/mnist_pc.py", "mnist-pc"),  # the dataset's own implementation names its raw folder
    ("ddeqs/bench/gpu_check.py", "mnist-pc"),  # the GPU check script runs these two datasets
    ("ddeqs/bench/gpu_check.py", "digits"),
}


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every string literal of a Python / Snakemake file that is not a docstring."""
    out, prev = [], tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.STRING and prev not in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            out.append((tok.start[0], re.sub(r"^[A-Za-z]*", "", tok.string).strip("'\"")))
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            prev = tok.type
    return out


def _listed(path: Path) -> set[str]:
    """Dataset names given as a whole string literal and data roots written in ``path``."""
    found = set()
    for _, text in _code_strings(path):
        if text in DATASETS:
            found.add(text)
        found.update(root for root in (registry.RAW_ROOT, registry.PROCESSED_ROOT) if root in text)
    return found


def test_dataset_names_and_data_paths_are_written_in_the_registry_only() -> None:
    registry_file = ROOT / "ddeqs/data/registry.py"
    # the scan finds what the registry states (so an empty result elsewhere means something)
    assert _listed(registry_file) == {*DATASETS, registry.RAW_ROOT, registry.PROCESSED_ROOT}
    files = [*ROOT.glob("ddeqs/**/*.py"), *ROOT.glob("workflow/**/*.smk"), ROOT / "Snakefile"]
    skip = {registry_file, ROOT / "ddeqs/paper/values.py"}  # values.py: the paper's published numbers
    elsewhere = {(f.relative_to(ROOT).as_posix(), name) for f in files if f not in skip for name in _listed(f)}
    assert elsewhere - USES == set(), "list datasets and build their paths in ddeqs/data/registry.py only"
