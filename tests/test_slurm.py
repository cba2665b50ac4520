"""A slice of the smoke DAG through the real SLURM executor plugin, with shim SLURM commands.

The shims (written by the test onto PATH) stand in for a cluster: ``sbatch`` records its arguments
and starts the job script in the background on this machine; ``sacct``/``squeue`` answer a status
query once every submitted job has finished (so the plugin never waits on a growing poll
interval); ``srun`` runs its command; ``scontrol``, ``sinfo``, ``sacctmgr`` and ``sshare`` answer
what the plugin asks. The slice: fetch and prepare the digits, then two independent trainings.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOW_FILES = ["Snakefile", "workflow", "params", "profiles"]
TRAININGS = ["mnist-cls-pointnet", "mnist-cls-ddeq"]

SHIM = r'''#!{python}
# Shim for the SLURM command named like this file (written by tests/test_slurm.py).
import fcntl, json, os, subprocess, sys, time
from pathlib import Path

STATE = Path({state!r})
name, args = Path(sys.argv[0]).name, sys.argv[1:]


def event(**kw):
    with open(STATE / "events.jsonl", "a") as fh:
        fh.write(json.dumps({{"t": time.time(), **kw}}) + "\n")


def value(flag):
    return args[args.index(flag) + 1] if flag in args else None


if name == "sbatch":
    with open(STATE / "counter", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        jobid = int(fh.read() or 1000) + 1
        fh.seek(0), fh.truncate(), fh.write(str(jobid))
    wrap = next(a[len("--wrap="):] for a in args if a.startswith("--wrap="))
    event(cmd="sbatch", jobid=jobid, argv=args)
    log = Path(value("--output").replace("%j", str(jobid)))
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}}
    env.update(SLURM_JOB_ID=str(jobid), SLURM_JOBID=str(jobid))
    (STATE / f"{{jobid}}.submitted").touch()
    subprocess.Popen(
        ["sh", "-c", wrap + f'; echo $? > "{{STATE}}/{{jobid}}.rc"'], cwd=value("-D") or os.getcwd(),
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    print(jobid)
elif name in ("sacct", "squeue"):
    if "--name" not in args:  # account guess (sacct -nu user -o Account): not expected here
        print("YOUR_ACCOUNT")
        sys.exit(0)
    event(cmd=name)
    ids = sorted(int(p.stem) for p in STATE.glob("*.submitted"))
    deadline = time.time() + 240
    while time.time() < deadline and not all((STATE / f"{{i}}.rc").exists() for i in ids):
        time.sleep(0.2)
    for i in ids:
        rc = (STATE / f"{{i}}.rc").read_text().strip() if (STATE / f"{{i}}.rc").exists() else None
        print(f"{{i}}|{{'RUNNING' if rc is None else 'COMPLETED' if rc == '0' else 'FAILED'}}")
elif name == "srun":
    event(cmd="srun", argv=args)
    rest = args[next(i for i, a in enumerate(args) if not a.startswith("-")):]
    os.execvp(rest[0], rest)
elif name == "scontrol":
    print("MinJobAge = 300 sec\nMaxArraySize = 1001")
elif name == "sinfo":
    print("PARTITION\nYOUR_CPU_PARTITION*\nYOUR_GPU_PARTITION")
elif name in ("sacctmgr", "sshare"):
    print("YOUR_ACCOUNT")
'''


def sbatch_calls(events: list[dict]) -> dict[str, list[dict]]:
    """sbatch events by rule (from the plugin's --comment rule_<rule>[_wildcards_...])."""
    out: dict[str, list[dict]] = {}
    for e in events:
        if e["cmd"] == "sbatch":
            comment = e["argv"][e["argv"].index("--comment") + 1]
            rule = re.match(r"rule_([a-z_]+?)(?:_wildcards_.*)?$", comment).group(1)
            out.setdefault(rule, []).append(e)
    return out


def opt(argv: list[str], flag: str) -> str | None:
    """Value of ``flag`` in an sbatch argv (``-p X`` or ``--gpus=X`` forms)."""
    for i, a in enumerate(argv):
        if a == flag:
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_smoke_slice_through_the_slurm_plugin(tmp_path: Path) -> None:
    repo, state, shims = tmp_path / "repo", tmp_path / "slurm", tmp_path / "bin"
    for d in (repo, state, shims):
        d.mkdir()
    for name in WORKFLOW_FILES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, repo / name)
    for cmd in ("sbatch", "sacct", "squeue", "srun", "scontrol", "sinfo", "sacctmgr", "sshare"):
        (shims / cmd).write_text(SHIM.format(python=sys.executable, state=str(state)))
        (shims / cmd).chmod(0o755)
    # one GPU per training job, as in the paper configuration (the smoke configuration runs on CPU)
    (repo / "gpu.yaml").write_text("resources: {gpu: 1, threads: 1, mem_mb: 2000, runtime: 30}\n")
    store = tmp_path / "tracking" / "mlflow.db"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env.update(PATH=f"{shims}{os.pathsep}{BIN}{os.pathsep}{env.get('PATH', '')}", MPLBACKEND="Agg",
               PYTHONPATH=f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep))
    targets = [f"results/smoke/runs/{r}/metrics.json" for r in TRAININGS]
    cmd = [
        str(BIN / "snakemake"), *targets, "--profile", "profiles/slurm",
        "--configfile", "params/smoke.yaml", "gpu.yaml", "--config", f"tracking_uri=sqlite:///{store}",
        "--slurm-init-seconds-before-status-checks", "1",
    ]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=360)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]

    events = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    calls = sbatch_calls(events)
    assert {r: len(c) for r, c in calls.items()} == {"fetch": 1, "prepare": 1, "train": 2}, calls.keys()

    for e in calls["train"]:
        argv = e["argv"]
        assert opt(argv, "-A") == "YOUR_ACCOUNT", shlex.join(argv)
        assert opt(argv, "-p") == "YOUR_GPU_PARTITION", shlex.join(argv)
        assert opt(argv, "-t") == "30", shlex.join(argv)  # minutes, the configuration's runtime
        assert int(opt(argv, "--mem")) >= 32000, shlex.join(argv)  # set-resources.train.mem_mb
        assert opt(argv, "--gpus") == "1", shlex.join(argv)  # one GPU per training job
        assert opt(argv, "--cpus-per-task") == "8", shlex.join(argv)
    for rule in ("fetch", "prepare"):
        argv = calls[rule][0]["argv"]
        assert opt(argv, "-p") == "YOUR_CPU_PARTITION" and opt(argv, "--gpus") is None, shlex.join(argv)
        assert opt(argv, "-A") == "YOUR_ACCOUNT"
    assert opt(calls["prepare"][0]["argv"], "-t") == "240"  # set-resources.prepare.runtime

    # independent trainings are submitted together: no status query between the two submissions
    order = [("train" if e in calls["train"] else e["cmd"]) for e in events if e["cmd"] != "srun"]
    first = order.index("train")
    assert order[first + 1] == "train", order

    for run in TRAININGS:
        assert json.loads((repo / "results/smoke/runs" / run / "metrics.json").read_text())["test"]["n"] > 0
    # every job logged to the tracking store named in the configuration (tracking_uri)
    with sqlite3.connect(store) as con:
        names = {r[0] for r in con.execute("SELECT name FROM runs")}
    assert set(TRAININGS) <= names, names
