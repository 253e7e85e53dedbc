"""The plan of a sweep, as scripts/reproduce.sh writes it, and its chains of steps.

``plan.tsv`` has one line per step, in the order the sequential sweep runs them, with the
tab-separated fields of ``Step`` (``args`` space-separated; empty fields for what a step does not
have, ``needs`` -1 for a step that waits for no other).
"""

import os.path as osp
from dataclasses import dataclass

PLAN_NAME = "plan.tsv"
FIELDS = ("index", "needs", "method", "dataset", "shots", "seed", "step", "kind", "run_dir", "check", "script", "args")


@dataclass(frozen=True)
class Step:
    """One call of a method's protocol script.

    index: its position in the plan; needs: the index of the step that must finish first (a test
        step's training), or -1.
    method, dataset, shots, seed, step: what it is (step: base2new_train, xd_test, ...).
    kind: "train" or "eval": the kind of run its folder holds ("" when the step has no run folder,
        e.g. a training step of a method without training).
    run_dir: its run folder ("" when it has none).
    check: what the sweep's check found: done, run, mixed (made with other settings), refused.
    script: the script, relative to the repository root; args: its arguments.
    """

    index: int
    needs: int
    method: str
    dataset: str
    shots: str
    seed: str
    step: str
    kind: str
    run_dir: str
    check: str
    script: str
    args: tuple

    def command(self):
        """The command line of the step, as a user would type it."""
        return " ".join(["bash", self.script, *self.args])


def read_plan(path):
    """The steps of the plan file ``path``."""
    steps = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            values = line.rstrip("\n").split("\t")
            if len(values) != len(FIELDS):
                raise ValueError(f"{path}:{number}: expected {len(FIELDS)} tab-separated fields ({', '.join(FIELDS)})")
            record = dict(zip(FIELDS, values))
            steps.append(
                Step(
                    **{
                        **record,
                        "index": int(record["index"]),
                        "needs": int(record["needs"]),
                        "args": tuple(record["args"].split()),
                    }
                )
            )
    return steps


def plan_path(sweep_dir):
    return osp.join(sweep_dir, PLAN_NAME)


def chains(steps):
    """The steps grouped into chains, in plan order: a step that needs no other starts a chain, and
    a step joins the chain of the step it needs. A chain runs as one job, its steps in order."""
    chain_of, grouped = {}, []
    for step in steps:
        if step.needs < 0:
            chain_of[step.index] = len(grouped)
            grouped.append([step])
        else:
            chain = chain_of[step.needs]
            chain_of[step.index] = chain
            grouped[chain].append(step)
    return grouped


def chain_name(chain):
    """A chain's name: its first step's command (stable across calls of the same sweep)."""
    return chain[0].command()
