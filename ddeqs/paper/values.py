"""Published numbers of the paper (Geuter et al., AISTATS 2025), for side-by-side columns.

Units are the units the tables print: accuracies in percent, runtimes in seconds per
epoch (the paper prints minutes/hours, measured on one H100), losses as published.
"""

from __future__ import annotations


def _hms(h: int = 0, m: int = 0) -> float:
    """Hours and minutes -> seconds."""
    return float(3600 * h + 60 * m)


#: Table 1, top-1 accuracy (%): role -> model -> value.
TABLE1 = {
    "mnist": {"pointnet": 97.5, "pt": 98.6, "ddeq": 98.1},
    "modelnet": {"pointnet": 77.3, "pt": 79.2, "ddeq": 78.2},
}
#: Parameter counts printed in Table 1's row labels.
TABLE1_SIZES = {"pointnet": "1.6M", "pt": "3.5M", "ddeq": "776k/1.2M"}

#: Table 2, W2 on MNIST-pc-partial by noise share: DDEQ over free particles, PCN over all.
#: ("Free particles" vs the corresponding particles of the target, App. D.8.)
TABLE2 = {
    "ddeq": {0.0: 0.33, 0.05: 0.17, 0.2: 0.19, 0.8: 0.33},
    "pcn": {0.0: 0.49, 0.05: 0.51, 0.2: 0.49, 0.8: 0.53},
}

#: Not printed by the paper (an empty cell of a published table).
NOT_REPORTED = float("nan")

#: Table 3, pushforward vs full architecture: column key -> (pushforward, full). The MNIST-pc
#: accuracy column is in the table's header, but its cells are empty in the paper.
TABLE3 = {
    "mnist_acc": (NOT_REPORTED, NOT_REPORTED),
    "mnist_ce": (0.101, 0.086),
    "modelnet_acc": (75.8, 77.3),
    "modelnet_ce": (0.938, 0.888),
    "mnist_cpl_mmd2": (0.0034, 0.0033),
}

#: Table 4, runtime per epoch (s) vs inner iterations (step x iterations constant), H100.
TABLE4 = {
    10: _hms(m=13),
    50: _hms(m=47),
    100: _hms(1, 32),
    200: _hms(3, 1),
    500: _hms(8, 12),
    1000: _hms(14, 53),
}
TABLE4_PCN = _hms(m=4)
#: Device of the published runtimes.
PAPER_DEVICE = "NVIDIA H100"

#: Table 5, runtime per epoch (s) vs share of input particles kept.
TABLE5 = {0.2: _hms(1, 16), 0.4: _hms(1, 29), 0.6: _hms(1, 51), 0.8: _hms(2, 20), 1.0: _hms(3, 1)}

#: Table 6, OT distance (Euclidean ground cost) on ModelNet40-s-partial: (mean, standard error).
TABLE6 = {"ddeq_free": (1.27, 0.04), "ddeq_full": (0.154, 0.002), "pcn_full": (0.61, 0.02)}

#: App. D.5: classical DEQ solvers reach these multiples of the DDEQ (WGF) test MMD² and W2.
D5_RATIOS = {"mmd2": 13.0, "w2_free": 4.0}
D5_SOLVERS = ("fixed_point", "anderson", "broyden")

#: Figure 10: the particle counts in Z the paper plots.
Z_PARTICLES = (1, 2, 4, 8, 10, 16, 32, 64)

#: The grid values the paper reports, per grid of the pipeline configuration (the columns and rows of
#: its tables, the points of Figure 10). The tables and figures show these and every value the plan
#: of the profile configures (ddeqs.paper.runs.PaperContext.grid_values): a configured value the
#: paper does not report is "not reported", a published value without a run is a missing cell.
PUBLISHED_GRIDS: dict[str, tuple] = {
    "noise": tuple(TABLE2["ddeq"]),
    "iters": tuple(TABLE4),
    "input_share": tuple(TABLE5),
    "z_particles": Z_PARTICLES,
    "solver": D5_SOLVERS,
    "pushforward": (True,),
}

#: App. D.9 (Figures 16, 17): MMD flow towards the rotated cloud.
FLOW = {
    "eta": 10.0,
    "gamma": 0.999,
    "init_mean": (-10.0, 0.0),
    "init_var": (1.0, 12.0),
    "snapshots": (0, 10, 50, 200, 1000, 2000),
    "orders": {"fig16": 5, "fig17": 8},
}
