#!/usr/bin/env python3
"""Optuna's TPE on an infertune landscape, for bench-search's side-by-side comparison.

Reads a landscape JSON (points with recorded runs, plus the space TOML), or one per seed
(seed i plays the i-th file: bench-search cuts a recording's runs per seed), runs
optuna.samplers.TPESampler (multivariate, constraints as graded violations, the space's
default candidate enqueued first, like infertune's tpe) for each seed, and prints, per seed,
the list of [params, run_index] it evaluated. The trial accounting is bench-search's, the same
for every strategy: every proposal is a trial, a repeated point included (measured again: a
different recorded run while one remains, as in bench-search); a point bench-search marks `refused` (the backend's own plan check,
which infertune's strategies are wrapped in) is told as infeasible and costs no trial. bench-search scores the traces itself, so both
samplers are judged by the same rule. Parameters are encoded as infertune's tpe does:
numeric value lists as an ordinal index, other lists as categoricals, integer ranges as ints.
"""
import argparse
import json
import random
import sys
import tomllib

import optuna


def dims(space):
    out = []
    for name, p in space["params"].items():
        if "values" in p:
            vals = p["values"]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)
            if numeric and len(vals) > 1:
                order = sorted(range(len(vals)), key=lambda i: vals[i])
                out.append((name, "ordinal", [vals[i] for i in order], p.get("default")))
            else:
                out.append((name, "cat", vals, p.get("default")))
        else:
            out.append((name, "int", (p["min"], p["max"], p.get("step", 1), p.get("log", False)), p.get("default")))
    return out


def suggest(trial, d):
    name, kind, spec, _ = d
    if kind == "ordinal":
        return spec[trial.suggest_int(name, 0, len(spec) - 1)]
    if kind == "cat":
        return trial.suggest_categorical(name, spec)
    lo, hi, step, log = spec
    if log:
        return trial.suggest_int(name, lo, hi, log=True)
    return trial.suggest_int(name, lo, hi, step=step)


def enqueue_value(d):
    name, kind, spec, default = d
    if default is None:
        return None
    if kind == "ordinal":
        return spec.index(default)
    return default


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("landscape", nargs="+", help="one file for every seed, or one per seed")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--trials", type=int, default=100)
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if len(a.landscape) not in (1, a.seeds):
        sys.exit(f"give one landscape for every seed or one per seed ({a.seeds}), not {len(a.landscape)}")
    results = []
    for seed in range(a.seeds):
        path = a.landscape[seed % len(a.landscape)]
        if seed == 0 or len(a.landscape) > 1:
            land = json.load(open(path))
        space = tomllib.loads(land["space_toml"])
        maximize = "maximize" in space.get("objective", {"maximize": 1})
        ds = dims(space)
        points = {json.dumps(p["params"], sort_keys=True, separators=(",", ":")): p for p in land["points"]}
        objs = [r["objective"] for p in land["points"] for r in p["runs"] if r["objective"] is not None]
        worst = min(objs) if maximize else max(objs)
        rng = random.Random(seed * 7919 + 17)
        sampler = optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constraints_func=lambda t: [t.user_attrs["violation"]]
        )
        study = optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)
        default = {d[0]: enqueue_value(d) for d in ds}
        if all(v is not None for v in default.values()):
            study.enqueue_trial(default)
        steps = []
        asked = 0
        # bench-search's draw rule: each point's runs in an order drawn once per point and
        # seed, taken in turn (a re-measure is a different run while one remains).
        orders = {}
        # A point the backend refuses before launch (bench-search's `refused`, the same check
        # infertune's strategies are wrapped in) is told to Optuna as infeasible but is not a
        # trial; a repeated point is a trial like any other.
        while len(steps) < a.trials and asked < 100 * a.trials:
            asked += 1
            trial = study.ask()
            params = {d[0]: suggest(trial, d) for d in ds}
            key = json.dumps(params, sort_keys=True, separators=(",", ":"))
            point = points[key]
            refused = point.get("refused", False)
            if key not in orders:
                order = list(range(len(point["runs"])))
                rng.shuffle(order)
                orders[key] = [order, 0]
            order, taken = orders[key]
            i = order[taken % len(order)]
            orders[key][1] += 1
            run = point["runs"][i]
            if not refused:
                steps.append([params, i])
            trial.set_user_attr("violation", run["violation"])
            study.tell(trial, run["objective"] if run["objective"] is not None else worst)
        results.append(steps)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
