"""``ddeqs paper claims``: every check on fixture runs that pass it and runs that fail it, the
'not measurable' cases (missing runs, margins too wide), the real App. D.9 flow, and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ddeqs.cli import main
from ddeqs.paper import claims as C
from ddeqs.paper.runs import RunStore, make_context
from fixtures.paper_runs import Z_GRID, make_runs, update_run, write_diagnostics

OK, BAD, NM = C.REPRODUCED, C.NOT_REPRODUCED, C.NOT_MEASURABLE
ROLES = ("mnist", "modelnet")


def verdict(root, claim_id: str, flow=None, seeds=C.FLOW_SEEDS) -> C.Outcome:
    store = RunStore(root)
    (res,) = C.evaluate_claims(store, make_context("smoke"), flow=flow, flow_seeds=seeds, only=[claim_id])
    return res.outcome


@pytest.fixture
def runs(tmp_path):
    return make_runs(tmp_path / "runs")


# -- the registry -------------------------------------------------------------------------------


def test_registry_covers_the_papers_claims():
    ids = C.claim_ids()
    assert len(ids) == len(set(ids))
    for needed in ("cls-competitive", "cls-fewer-params", "cpl-w2-vs-pcn", "cpl-noise-helps", "arch-full-vs-pushforward",
                   "z-particles-flat", "z-particles-drop", "runtime-iters-linear", "iters-quality-rises",
                   "runtime-share-rising", "wgf-beats-classical", "diag-b10-bounded", "diag-b11-bounded",
                   "diag-b12-bounded", "flow-rotation-invariant"):
        assert needed in ids
    for c in C.CLAIMS:
        assert c.source and c.statement and c.paper and c.method, c.id
        assert any(w in c.source for w in ("Table", "Figure", "Sec.", "App.")), c.id


def test_decisions_three_ways():
    assert C.decide_better(1.0, 0.1) == OK
    assert C.decide_better(-1.0, 0.1) == BAD
    assert C.decide_better(0.1, 0.1) == NM  # the margin spans 0: too few samples to decide
    assert C.decide_better(0.0, 0.0) == BAD  # an exact tie contradicts "better"
    assert C.decide_better(-1.0, 0.1, tol=2.0) == OK  # non-inferior within the tolerance
    assert C.decide_within(1.0, 0.1, 2.0) == OK and C.decide_within(3.0, 0.1, 2.0) == BAD
    assert C.decide_within(1.9, 0.5, 2.0) == NM


# -- Table 1 -------------------------------------------------------------------------------------


def _acc(root, se=0.001, **acc):
    for name, a in acc.items():
        update_run(root, name.replace("_", "-"), test={"accuracy": a, "accuracy_se": se})


def test_cls_competitive(runs):
    # fixture margins (1 % SE): DDEQ 1 pt below PT is within 2 pt but the margin spans the tolerance
    assert verdict(runs, "cls-competitive").verdict == NM
    _acc(runs, mnist_cls_ddeq=0.91, mnist_cls_pointnet=0.90, mnist_cls_pt=0.92,
         modelnet_cls_ddeq=0.71, modelnet_cls_pointnet=0.70, modelnet_cls_pt=0.72)
    out = verdict(runs, "cls-competitive")
    assert out.verdict == OK, out.reason
    _acc(runs, mnist_cls_ddeq=0.80)
    out = verdict(runs, "cls-competitive")
    assert out.verdict == BAD and "MNIST-pc" in out.reason


def test_cls_competitive_binomial_se_when_only_means_exist(runs):
    for name, a in (("mnist-cls-ddeq", 0.91), ("mnist-cls-pointnet", 0.90), ("mnist-cls-pt", 0.92),
                    ("modelnet-cls-ddeq", 0.71), ("modelnet-cls-pointnet", 0.70), ("modelnet-cls-pt", 0.72)):
        update_run(runs, name, test={"accuracy": a, "accuracy_se": None, "n": 20000})
    out = verdict(runs, "cls-competitive")
    assert out.verdict == OK, out.reason
    q = next(q for q in out.quantities if q.name == "mnist DDEQ accuracy")
    assert math.isclose(q.se, 100 * math.sqrt(0.91 * 0.09 / 20000), rel_tol=1e-9)
    for name in ("mnist-cls-ddeq", "mnist-cls-pt"):
        update_run(runs, name, test={"n": 50})  # 50 test samples: a 1-pt gap cannot be judged
    assert verdict(runs, "cls-competitive").verdict == NM


def test_cls_competitive_missing_run(tmp_path):
    runs = make_runs(tmp_path / "runs", skip=("modelnet-cls-pt",))
    out = verdict(runs, "cls-competitive")
    assert out.verdict == NM and "modelnet-cls-pt" in out.reason


def test_cls_fewer_params(runs):
    assert verdict(runs, "cls-fewer-params").verdict == BAD  # fixture: equal counts
    for role in ROLES:
        update_run(runs, f"{role}-cls-ddeq", n_params=500)
    assert verdict(runs, "cls-fewer-params").verdict == OK
    update_run(runs, "modelnet-cls-pt", n_params=None)
    out = verdict(runs, "cls-fewer-params")
    assert out.verdict == NM and "modelnet-cls-pt" in out.reason


# -- Table 2 -------------------------------------------------------------------------------------


def test_w2_vs_pcn(runs):
    out = verdict(runs, "cpl-w2-vs-pcn")
    assert out.verdict == OK, out.reason
    update_run(runs, "mnist-cpl-pcn--noise-0.2", test={"w2_full": 0.1})
    out = verdict(runs, "cpl-w2-vs-pcn")
    assert out.verdict == BAD and "20%" in out.reason


def test_w2_vs_pcn_missing_noise_level(tmp_path):
    runs = make_runs(tmp_path / "runs", skip=("mnist-cpl-pcn--noise-0.8",))
    out = verdict(runs, "cpl-w2-vs-pcn")
    assert out.verdict == NM and "mnist-cpl-pcn--noise-0.8" in out.missing


def test_noise_helps(runs):
    assert verdict(runs, "cpl-noise-helps").verdict == NM  # fixture: equal W2
    update_run(runs, "mnist-cpl-ddeq--noise-0", test={"w2_free": 0.6})
    assert verdict(runs, "cpl-noise-helps").verdict == OK
    update_run(runs, "mnist-cpl-ddeq--noise-0", test={"w2_free": 0.1})
    assert verdict(runs, "cpl-noise-helps").verdict == BAD


# -- Table 3 -------------------------------------------------------------------------------------


def test_full_vs_pushforward(runs):
    out = verdict(runs, "arch-full-vs-pushforward")
    assert out.verdict == OK, out.reason
    update_run(runs, "modelnet-cls-ddeq--pushforward-true", test={"accuracy": 0.80})  # 9 pt above the full one
    out = verdict(runs, "arch-full-vs-pushforward")
    assert out.verdict == BAD and "accuracy" in out.reason


def test_full_vs_pushforward_loss_within_tolerance(runs):
    # 3 % worse cross entropy is within the 5 % tolerance when measured precisely
    update_run(runs, "mnist-cls-ddeq", test={"cross_entropy": 0.3399, "cross_entropy_se": 1e-4})
    update_run(runs, "mnist-cls-ddeq--pushforward-true", test={"cross_entropy": 0.33, "cross_entropy_se": 1e-4})
    assert verdict(runs, "arch-full-vs-pushforward").verdict == OK
    update_run(runs, "mnist-cls-ddeq", test={"cross_entropy": 0.36, "cross_entropy_se": 1e-4})  # 9 % worse
    assert verdict(runs, "arch-full-vs-pushforward").verdict == BAD


def test_full_vs_pushforward_missing(tmp_path):
    runs = make_runs(tmp_path / "runs", skip=("mnist-cpl-ddeq--pushforward-true",))
    assert verdict(runs, "arch-full-vs-pushforward").verdict == NM


# -- Figure 10 -----------------------------------------------------------------------------------


def _z_runs(role, z):
    return f"{role}-cls-ddeq" if z == 10 else f"{role}-cls-ddeq--z_particles-{z}"


def _set_z(runs, accs: dict[int, float], roles=ROLES):
    for role in roles:
        for z, a in accs.items():
            update_run(runs, _z_runs(role, z), test={"accuracy": a, "accuracy_se": 0.002})


FLAT = {1: 0.900, 2: 0.905, 4: 0.91, 8: 0.91, 10: 0.912, 16: 0.90, 32: 0.80, 64: 0.60}


def test_z_particles_flat(runs):
    out = verdict(runs, "z-particles-flat")
    assert out.verdict == BAD  # fixture: 50 % at 1 particle, 91 % at 10
    _set_z(runs, FLAT)
    out = verdict(runs, "z-particles-flat")
    assert out.verdict == OK, out.reason


def test_z_particles_flat_only_where_a_grid_ran(tmp_path):
    # the paper's configuration runs the grid on MNIST-pc only: ModelNet40-s is not required
    runs = make_runs(tmp_path / "runs", skip=tuple(f"modelnet-cls-ddeq--z_particles-{z}" for z in Z_GRID))
    _set_z(runs, FLAT, roles=("mnist",))
    out = verdict(runs, "z-particles-flat")
    assert out.verdict == OK and "ModelNet40-s" not in out.value
    (runs / "mnist-cls-ddeq--z_particles-4" / "metrics.json").unlink()
    out = verdict(runs, "z-particles-flat")
    assert out.verdict == NM and "mnist-cls-ddeq--z_particles-4" in out.missing


def test_z_particles_drop(runs):
    assert verdict(runs, "z-particles-drop").verdict == BAD  # fixture: 32 and 64 above the 1-16 mean
    _set_z(runs, FLAT)
    out = verdict(runs, "z-particles-drop")
    assert out.verdict == OK, out.reason


def test_z_particles_10_vs_1(runs):
    assert verdict(runs, "z-particles-10-vs-1").verdict == OK  # fixture: 91 % vs 50.5 %
    _set_z(runs, {1: 0.99})
    assert verdict(runs, "z-particles-10-vs-1").verdict == BAD


def test_z_particles_no_grid(tmp_path):
    runs = make_runs(tmp_path / "runs", skip=tuple(f"{r}-cls-ddeq--z_particles-{z}" for r in ROLES for z in Z_GRID))
    for cid in ("z-particles-flat", "z-particles-drop", "z-particles-10-vs-1"):
        assert verdict(runs, cid).verdict == NM


# -- Tables 4, 5 ---------------------------------------------------------------------------------


def test_runtime_linear(runs):
    out = verdict(runs, "runtime-iters-linear")  # fixture: seconds = iterations
    assert out.verdict == OK, out.reason
    update_run(runs, "mnist-cpl-ddeq--iters-1000", seconds_per_epoch=5000.0)  # superlinear
    out = verdict(runs, "runtime-iters-linear")
    assert out.verdict == BAD and "residual" in out.reason


def test_runtime_linear_must_rise(runs):
    for it in (10, 50, 100, 500, 1000):
        update_run(runs, f"mnist-cpl-ddeq--iters-{it}", seconds_per_epoch=2000.0 - it)
    update_run(runs, "mnist-cpl-ddeq", seconds_per_epoch=1800.0)
    out = verdict(runs, "runtime-iters-linear")
    assert out.verdict == BAD and "slope" in out.reason


def test_runtime_linear_noise_widens_the_tolerance(runs):
    # 40 % off the line at 500 iterations, but its epochs scatter widely: within 15 % + 2 SE
    update_run(runs, "mnist-cpl-ddeq--iters-500", seconds_per_epoch=700.0, epoch_seconds=[300.0, 700.0, 1100.0])
    assert verdict(runs, "runtime-iters-linear").verdict == OK
    update_run(runs, "mnist-cpl-ddeq--iters-500", seconds_per_epoch=700.0, epoch_seconds=[700.0, 700.0, 700.0])
    assert verdict(runs, "runtime-iters-linear").verdict == BAD


def test_runtime_linear_too_few_levels(tmp_path):
    runs = make_runs(tmp_path / "runs", skip=tuple(f"mnist-cpl-ddeq--iters-{i}" for i in (10, 50, 100, 500)))
    assert verdict(runs, "runtime-iters-linear").verdict == NM


def test_iters_quality(runs):
    assert verdict(runs, "iters-quality-rises").verdict == NM  # fixture: equal MMD²
    update_run(runs, "mnist-cpl-ddeq--iters-10", test={"mmd2": 0.05})
    assert verdict(runs, "iters-quality-rises").verdict == OK
    update_run(runs, "mnist-cpl-ddeq--iters-10", test={"mmd2": 0.001})
    assert verdict(runs, "iters-quality-rises").verdict == BAD


def test_iters_50_enough(runs):
    assert verdict(runs, "iters-50-enough").verdict == OK  # fixture: equal MMD²
    update_run(runs, "mnist-cpl-ddeq--iters-50", test={"mmd2": 0.02})
    assert verdict(runs, "iters-50-enough").verdict == BAD


def test_pcn_faster(runs):
    assert verdict(runs, "pcn-faster").verdict == OK
    update_run(runs, "mnist-cpl-pcn", seconds_per_epoch=500.0)
    assert verdict(runs, "pcn-faster").verdict == BAD


def test_runtime_share_rising(runs):
    assert verdict(runs, "runtime-share-rising").verdict == OK  # fixture: 200 s x share
    update_run(runs, "mnist-cpl-ddeq--input_share-0.6", seconds_per_epoch=10.0)
    out = verdict(runs, "runtime-share-rising")
    assert out.verdict == BAD and "60%" in out.reason
    update_run(runs, "mnist-cpl-ddeq--input_share-0.6", seconds_per_epoch=120.0)
    update_run(runs, "mnist-cpl-ddeq--input_share-1", seconds_per_epoch=60.0, epoch_seconds=[10.0, 60.0, 210.0])
    assert verdict(runs, "runtime-share-rising").verdict == NM  # 20 % -> 100 %: within the timing noise


# -- App. D.5, Table 6 ---------------------------------------------------------------------------


def test_wgf_beats_classical(runs):
    assert verdict(runs, "wgf-beats-classical").verdict == OK
    update_run(runs, "mnist-cpl-ddeq--solver-anderson", test={"mmd2": 0.005})
    out = verdict(runs, "wgf-beats-classical")
    assert out.verdict == BAD and "anderson" in out.reason


def test_wgf_beats_classical_missing(tmp_path):
    runs = make_runs(tmp_path / "runs", skip=("mnist-cpl-ddeq--solver-broyden",))
    assert verdict(runs, "wgf-beats-classical").verdict == NM


def test_ot_full_vs_pcn(runs):
    assert verdict(runs, "ot-full-vs-pcn").verdict == OK
    update_run(runs, "modelnet-cpl-pcn", test={"ot_full": 0.2})
    assert verdict(runs, "ot-full-vs-pcn").verdict == BAD


# -- Figures 7-9 ---------------------------------------------------------------------------------

DDEQ_MAINS = ("mnist-cls-ddeq", "modelnet-cls-ddeq", "mnist-cpl-ddeq", "modelnet-cpl-ddeq")


@pytest.mark.parametrize("key", ["b10", "b11", "b12"])
def test_diagnostics_bounded(runs, key):
    rng = np.random.default_rng(1)
    for name in DDEQ_MAINS:
        write_diagnostics(runs, name, **{key: list(rng.uniform(0.9, 1.1, 40))})
    cid = f"diag-{key}-bounded"
    out = verdict(runs, cid)
    assert out.verdict == OK, out.reason
    write_diagnostics(runs, "mnist-cpl-ddeq", **{key: list(np.exp(0.2 * np.arange(40)))})  # grows without bound
    out = verdict(runs, cid)
    assert out.verdict == BAD and "MNIST-pc-partial" in out.reason
    write_diagnostics(runs, "mnist-cpl-ddeq", **{key: [None, 1.0, 2.0]})  # too short to judge
    out = verdict(runs, cid)
    assert out.verdict == NM and any("fewer than" in m for m in out.missing)


def test_diagnostics_infinite_is_not_bounded(runs):
    for name in DDEQ_MAINS:
        write_diagnostics(runs, name, b11=[1.0] * 10)
    (runs / "modelnet-cls-ddeq" / "diagnostics.json").write_text(
        json.dumps({"step": list(range(10)), "b11": [1.0] * 9 + ["Infinity"]}).replace('"Infinity"', "Infinity"))
    assert verdict(runs, "diag-b11-bounded").verdict == BAD


# -- Figures 16/17 -------------------------------------------------------------------------------


def test_flow_seeds_decide(runs):
    assert verdict(runs, "flow-rotation-invariant", flow=lambda order, seed: 1e-4).verdict == OK
    out = verdict(runs, "flow-rotation-invariant", flow=lambda order, seed: 0.5 if seed == 2 else 1e-4)
    assert out.verdict == BAD and "3 seeds" in out.reason
    assert verdict(runs, "flow-rotation-invariant", flow=None).verdict == NM


@pytest.mark.slow
def test_flow_real_numerics_at_the_smoke_size(runs):
    # params/smoke.yaml: 60 particles, 500 iterations (ratios about 4e-4 and 1e-3)
    out = verdict(runs, "flow-rotation-invariant", flow=C.flow_ratio_fn(60, 500))
    assert out.verdict == OK, out.reason
    assert all(0 < q.value < C.FLOW_TOL for q in out.quantities)
    # 5 iterations do not reach a symmetric pattern
    assert verdict(runs, "flow-rotation-invariant", flow=C.flow_ratio_fn(60, 5), seeds=(0,)).verdict == BAD


# -- everything missing, CLI ---------------------------------------------------------------------


def test_no_runs_nothing_measurable(tmp_path):
    (tmp_path / "runs").mkdir()
    res = C.evaluate_claims(RunStore(tmp_path / "runs"), make_context("smoke"), flow=lambda o, s: 1e-4)
    got = {r.claim.id: r.outcome.verdict for r in res}
    assert got.pop("flow-rotation-invariant") == OK  # needs no training
    assert set(got.values()) == {NM}


def test_cli_writes_claims_and_summary(tmp_path, capsys):
    runs = make_runs(tmp_path / "runs", skip=("mnist-cpl-pcn--noise-0.8",))
    md, js = tmp_path / "res" / "claims.md", tmp_path / "res" / "claims.json"
    rc = main(["paper", "claims", "--runs", str(runs), "--profile", "smoke", "--md", str(md), "--json", str(js),
               "--flow-particles", "20", "--flow-iters", "50", "--flow-seeds", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    data = json.loads(js.read_text())
    assert data["profile"] == "smoke" and len(data["claims"]) == len(C.CLAIMS)
    assert sum(data["counts"].values()) == len(C.CLAIMS)
    by_id = {c["id"]: c for c in data["claims"]}
    assert by_id["cpl-w2-vs-pcn"]["verdict"] == NM and "mnist-cpl-pcn--noise-0.8" in by_id["cpl-w2-vs-pcn"]["missing"]
    assert by_id["pcn-faster"]["verdict"] == OK
    read = {r for q in by_id["cpl-w2-vs-pcn"]["quantities"] for r in q["runs"]}
    assert {"mnist-cpl-ddeq--noise-0.2", "mnist-cpl-pcn--noise-0.2", "mnist-cpl-ddeq"} <= read  # 5 %: the main run
    w2 = next(q for q in by_id["cpl-w2-vs-pcn"]["quantities"] if q["runs"] == ["mnist-cpl-pcn--noise-0.2"])
    assert math.isclose(w2["value"], 0.2 * 2.2) and math.isclose(w2["se"], 0.01 * 0.2 * 2.2)
    text = md.read_text()
    assert "| Claim | Source | Paper | Reproduced (± margin) | Verdict | Reason |" in text
    assert "**cpl-w2-vs-pcn**" in text and "Table 2" in text and "0.33/0.17/0.19/0.33" in text
    assert "cpl-w2-vs-pcn" in out and f"{data['counts'][OK]} reproduced" in out
    assert len(out.splitlines()) <= 30 and max(map(len, out.splitlines()[:-1])) <= 100  # one screen
    # --summary prints the same summary from the JSON alone
    assert main(["paper", "claims", "--summary", "--json", str(js)]) == 0
    again = capsys.readouterr().out
    assert again.strip() == C.summary_text(data).strip()


def test_cli_summary_without_json_is_a_clean_error(tmp_path, capsys):
    assert main(["paper", "claims", "--summary", "--json", str(tmp_path / "none.json")]) == 1
    assert "ddeqs paper claims" in capsys.readouterr().err


def test_cli_unknown_claim(tmp_path, capsys):
    runs = make_runs(tmp_path / "runs")
    assert main(["paper", "claims", "--runs", str(runs), "--only-claims", "nope", "--md", str(tmp_path / "c.md"),
                 "--json", str(tmp_path / "c.json")]) == 1
    assert "cls-competitive" in capsys.readouterr().err


def test_report_links_claims(tmp_path, capsys):
    runs = make_runs(tmp_path / "runs")
    res = tmp_path / "results"
    assert main(["paper", "claims", "--runs", str(runs), "--profile", "smoke", "--md", str(res / "claims.md"),
                 "--json", str(res / "claims.json"), "--flow-particles", "20", "--flow-iters", "50",
                 "--flow-seeds", "1"]) == 0
    assert main(["paper", "report", "--runs", str(runs), "--profile", "smoke", "--tables-out", str(res / "tables"),
                 "--figures-out", str(res / "figures"), "--report", str(res / "README.md"),
                 "--claims", str(res / "claims.json")]) == 0
    readme = (res / "README.md").read_text()
    assert "## The paper's claims, checked" in readme and "[claims.md](claims.md)" in readme
    assert "`cls-competitive` (Table 1" in readme


# -- did every model learn? -------------------------------------------------------------------------


def test_learning_check_flags_chance_accuracy_and_completion_that_did_not_move(tmp_path, capsys):
    from ddeqs.paper.learning import LEARNED, NO_BASELINE, NOT_LEARNED, check_learning

    runs = make_runs(tmp_path / "runs")
    update_run(runs, "mnist-cls-pointnet", {"accuracy": 0.12, "accuracy_se": 0.017})  # 10 digit classes: chance
    update_run(runs, "mnist-cls-ddeq", {"accuracy": 0.881, "accuracy_se": 0.017})
    update_run(runs, "mnist-cpl-ddeq", {"w2_free": 1.53, "w2_free_se": 0.02},
               init={"w2_free": 2.28, "w2_free_se": 0.02, "n": 50})  # -33 %: learned
    update_run(runs, "mnist-cpl-pcn", {"w2_full": 1.30, "w2_full_se": 0.03},
               init={"w2_full": 1.38, "w2_full_se": 0.03, "n": 50})  # -6 %: not "well below"
    by_run = {e["run"]: e for e in check_learning(RunStore(runs))}
    assert all("--" not in r for r in by_run) and len(by_run) == 10  # main runs only
    assert by_run["mnist-cls-ddeq"]["verdict"] == LEARNED and by_run["mnist-cls-ddeq"]["baseline"] == pytest.approx(0.1)
    assert by_run["mnist-cls-pointnet"]["verdict"] == NOT_LEARNED  # not twice chance
    assert by_run["modelnet-cls-pt"]["baseline"] == pytest.approx(1 / 8)  # shapes: 8 classes
    assert by_run["mnist-cpl-ddeq"]["verdict"] == LEARNED and "(-33 %)" in by_run["mnist-cpl-ddeq"]["text"]
    assert by_run["mnist-cpl-pcn"]["verdict"] == NOT_LEARNED and by_run["mnist-cpl-pcn"]["metric"] == "w2_full"
    assert by_run["modelnet-cpl-ddeq"]["verdict"] == NO_BASELINE  # trained without train.eval_init
    # written into claims.md / claims.json and named in the one-screen summary
    md, js = tmp_path / "claims.md", tmp_path / "claims.json"
    assert main(["paper", "claims", "--runs", str(runs), "--profile", "smoke", "--md", str(md), "--json", str(js),
                 "--flow-particles", "20", "--flow-iters", "50", "--flow-seeds", "1", "--only-claims", "pcn-faster"]) == 0
    out = capsys.readouterr().out
    assert "Did every model learn? 6 of 10 main runs learned:" in out
    assert "mnist-cls-pointnet: did not learn, accuracy 12.0 %" in out and "mnist-cpl-ddeq:" not in out
    data = json.loads(js.read_text())
    assert [e["verdict"] for e in data["learning"] if e["run"] == "mnist-cpl-pcn"] == [NOT_LEARNED]
    text = md.read_text()
    assert text.index("## Did every model learn?") < text.index("## The claims") < text.index("| Claim |")
    assert "| mnist-cpl-ddeq | w2_free 2.28 untrained -> 1.53 ± 0.02 (-33 %) | learned |" in text
