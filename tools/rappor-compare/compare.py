#!/usr/bin/env python3
"""Compares `ldp rappor decode` with the reference RAPPOR decoder's algorithm on
simulated replicates of the words-small setup (k=16, h=2, m=64, f=0.5, p=0.5,
q=0.75, 100,000 reports of the top 200 words, the top 300 as candidates).

One realization (the shared words-small files) cannot tell two decoders apart:
their total variation distances (TV) move by about 0.015 from one realization
to the next. This tool draws many realizations, decodes each with both, and
reports paired differences with their standard errors.

- "ldp" runs the real binary: `ldp rappor decode --params --counts --candidates
  --format json` (defaults: Bonferroni at alpha 0.05).
- "reference" is this file's own re-statement of the algorithm of the
  reference R decoder (google/rappor analysis/R/decode.R), written from its
  description: per-bit estimates and standard deviations; a non-negative LASSO
  with intercept at the end of its path (lambda = 1e-4 lambda_max) selects
  candidates; an unweighted least-squares fit on them with x >= 0, sum x <= 1
  and A x <= clamp(b + 3 sd, 0.01, 1); five fits (the data and four Gaussian
  resamplings, sd x sqrt 2 in the constraint); a string is reported when the
  mean of its five coefficients exceeds 1e-6 + 2 x their standard deviation.
  It is an approximation (sklearn's coordinate descent for glmnet, OSQP for
  limSolve's lsei), not the reference code: on the words-small files it
  detects 11 to 13 strings, 0 to 1 of them false, TV 0.357 to 0.388 across
  resampling seeds, where the reference detects 13, 2 false, TV 0.376.

A replicate draws each device's word from the word frequencies, cohort = device
number mod m, and, since each device sends one report, each IRR count as
Bin(n1, q*) + Bin(N_c - n1, p*) given the cohort's Bloom count n1 (bits are
independent given the Bloom filter), as aggregator/tests/rappor_replicates.rs
does.

Needs: python3 with numpy, scipy, scikit-learn and osqp
(`pip install numpy scipy scikit-learn osqp`), and a release build of ldp
(`cargo build --release -p ldp-aggregator --bin ldp`). Run from the
repository root:

    python3 tools/rappor-compare/compare.py --replicates 40 --seed 1000
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import osqp
import scipy.sparse as sp
from sklearn.linear_model import Lasso

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CASE = os.path.join(ROOT, "tests", "data", "rappor", "words-small")
WORDS = os.path.join(ROOT, "data", "words", "en_words_top10k.tsv")
SUPPORT = 200
DEVICES = 100_000


def read_params():
    with open(os.path.join(CASE, "params.csv")) as f:
        row = list(csv.DictReader(f))[0]
    k, h, m = (int(row[x]) for x in "khm")
    p, q, f_ = (float(row[x]) for x in "pqf")
    # RAPPOR's names: p = P(1 | PRR 0), q = P(1 | PRR 1).
    q_star = q * (1 - f_ / 2) + p * f_ / 2
    p_star = p * (1 - f_ / 2) + q * f_ / 2
    return k, h, m, q_star, p_star


def read_map(k, m):
    """Candidates and the m*k x S 0/1 design from the reference map.csv."""
    names, cols = [], []
    with open(os.path.join(CASE, "map.csv"), newline="") as f:
        for row in csv.reader(f):
            names.append(row[0])
            col = np.zeros(m * k)
            col[[int(v) - 1 for v in row[1:]]] = 1.0
            cols.append(col)
    return names, np.array(cols).T


def read_truth():
    with open(os.path.join(CASE, "truth.csv")) as f:
        return {r["value"]: int(r["count"]) for r in csv.DictReader(f)}


def read_counts_file(path):
    return np.loadtxt(path, delimiter=",", dtype=np.int64)


def tv(reported, truth):
    total = sum(truth.values())
    keys = set(truth) | set(reported)
    return 0.5 * sum(abs(reported.get(s, 0.0) - truth.get(s, 0) / total) for s in keys)


class Setup:
    def __init__(self):
        self.k, self.h, self.m, self.q_star, self.p_star = read_params()
        self.names, self.design = read_map(self.k, self.m)
        with open(WORDS) as f:
            freqs = [float(line.split("\t")[1]) for line in f.readlines()[1 : SUPPORT + 1]]
        self.word_p = np.array(freqs) / sum(freqs)
        # The support is the first SUPPORT candidates (both are in frequency order).
        self.bloom = self.design.reshape(self.m, self.k, -1)[:, :, :SUPPORT]

    def replicate(self, seed):
        rng = np.random.default_rng(seed)
        words = rng.choice(SUPPORT, size=DEVICES, p=self.word_p)
        held = np.zeros((self.m, SUPPORT), dtype=np.int64)
        np.add.at(held, (np.arange(DEVICES) % self.m, words), 1)
        n_c = held.sum(1)
        n1 = np.einsum("cks,cs->ck", self.bloom, held).astype(np.int64)
        ones = rng.binomial(n1, self.q_star) + rng.binomial(n_c[:, None] - n1, self.p_star)
        counts = np.concatenate([n_c[:, None], ones], 1)
        truth = {self.names[s]: int(held[:, s].sum()) for s in range(SUPPORT) if held[:, s].any()}
        return counts, truth

    def reference_decode(self, counts, seed):
        """The reference algorithm, as described in the module docs."""
        rng = np.random.default_rng(seed)
        n_c = counts[:, 0].astype(float)
        ones = counts[:, 1:].astype(float)
        gap = self.q_star - self.p_star
        est = (ones / n_c[:, None] - self.p_star) / gap
        rate = np.clip(est, 0, 1) * self.q_star + (1 - np.clip(est, 0, 1)) * self.p_star
        sd = np.sqrt(rate * (1 - rate) / n_c[:, None]) / gap
        b, sd = est.reshape(-1), sd.reshape(-1)
        n, s = n_c.sum(), self.design.shape[1]
        fits = []
        for r in range(5):
            bb, ss = (b, sd) if r == 0 else (b + rng.normal(0, sd), sd * np.sqrt(2))
            coef = np.zeros(s)
            lam = np.max(np.abs(self.design.T @ (bb - bb.mean()))) / len(bb) * 1e-4
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lasso = Lasso(alpha=lam, positive=True, max_iter=20000, tol=1e-7)
                selected = np.nonzero(lasso.fit(self.design, bb).coef_ > 0)[0]
            if len(selected):
                coef[selected] = constrained_fit(self.design[:, selected], bb, ss)
            fits.append(coef)
        fits = np.array(fits) * n
        mean, spread = fits.mean(0), fits.std(0, ddof=1)
        return {self.names[j]: np.floor(mean[j]) / n for j in np.nonzero(mean > 1e-6 + 2 * spread)[0]}


def constrained_fit(x, b, sd):
    """min |x c - b|^2 subject to c >= 0, sum c <= 1, x c <= clamp(b + 3 sd, 0.01, 1)."""
    n = x.shape[1]
    upper = np.clip(b + 3 * sd, 0.01, 1)
    constraints = sp.vstack([sp.eye(n), sp.csr_matrix(np.ones((1, n))), sp.csr_matrix(x)]).tocsc()
    lo = np.concatenate([np.zeros(n), [-np.inf], np.full(x.shape[0], -np.inf)])
    hi = np.concatenate([np.full(n, np.inf), [1.0], upper])
    solver = osqp.OSQP()
    solver.setup(sp.csc_matrix(x.T @ x), -(x.T @ b), constraints, lo, hi,
                 verbose=False, eps_abs=1e-9, eps_rel=1e-9, max_iter=200000, polish=True)
    return np.maximum(solver.solve().x, 0)


def ldp_decode(binary, counts_path):
    out = subprocess.run(
        [binary, "--log", "warn", "rappor", "decode", "--params", os.path.join(CASE, "params.csv"),
         "--counts", counts_path, "--candidates", os.path.join(CASE, "candidates.txt"),
         "--format", "json"],
        check=True, capture_output=True, text=True).stdout
    return {d["string"]: d["proportion"] for d in json.loads(out)["detections"]}


def score(reported, truth):
    return tv(reported, truth), len(reported), sum(1 for s in reported if s not in truth)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1000, help="replicate r uses seed + r")
    ap.add_argument("--ldp", default=os.path.join(ROOT, "target", "release", "ldp"))
    args = ap.parse_args()
    if not os.access(args.ldp, os.X_OK):
        sys.exit(f"{args.ldp} not found: cargo build --release -p ldp-aggregator --bin ldp")
    setup = Setup()

    truth = read_truth()
    start = time.perf_counter()
    ours = score(ldp_decode(args.ldp, os.path.join(CASE, "counts.csv")), truth)
    print(f"words-small: ldp TV {ours[0]:.4f}, {ours[1]} detected, {ours[2]} false "
          f"({time.perf_counter() - start:.2f} s with process start)")
    counts = read_counts_file(os.path.join(CASE, "counts.csv"))
    for seed in range(3):
        ref = score(setup.reference_decode(counts, seed), truth)
        print(f"words-small: reference algorithm (resampling seed {seed}) TV {ref[0]:.4f}, "
              f"{ref[1]} detected, {ref[2]} false")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "counts.csv")
        for r in range(args.replicates):
            counts, truth = setup.replicate(args.seed + r)
            np.savetxt(path, counts, fmt="%d", delimiter=",")
            rows.append(score(ldp_decode(args.ldp, path), truth)
                        + score(setup.reference_decode(counts, args.seed + r), truth))
    a = np.array(rows, dtype=float)
    diff = a[:, 0] - a[:, 3]
    print(f"\n{args.replicates} replicates (seeds {args.seed} to {args.seed + args.replicates - 1}):")
    print("| decoder | mean TV | detected per replicate | false per replicate | replicates with any false |")
    print("|---|---|---|---|---|")
    for name, o in (("ldp (Bonferroni, alpha 0.05)", 0), ("reference algorithm", 3)):
        print(f"| {name} | {a[:, o].mean():.4f} | {a[:, o + 1].mean():.2f} | "
              f"{a[:, o + 2].mean():.2f} | {int((a[:, o + 2] > 0).sum())} |")
    print(f"paired TV difference ldp - reference: {diff.mean():+.4f} "
          f"(standard error {diff.std(ddof=1) / np.sqrt(len(diff)):.4f}); "
          f"ldp lower in {int((diff < 0).sum())} of {len(diff)}")


if __name__ == "__main__":
    main()
