#!/usr/bin/env python3
# FLOP parity between the Transfusion fits of a second analysis (e.g. results/scaling/flow: Transfusion with
# rectified flow, whose runs carry the same recipe name) and every recipe's fits of a first one, with
# `fusion analyze`'s formula (Sources/Experiments/Runs/ScalingAnalysis.swift):
#   ratio B/A = 10^((a_A - a_B + (b_A - b_B)·log10 C*) / b_B),  C* = min(max C_A, max C_B).
# Needs h5py (scripts/notebooks installs it into .venv-notebooks):
#   .venv-notebooks/bin/python scripts/parity-between-analyses.py results/scaling/analysis/analysis.h5 results/scaling/flow/analysis/analysis.h5
import sys, math, h5py
if len(sys.argv) != 3:
    sys.exit("usage: parity-between-analyses.py MAIN/analysis.h5 FLOW/analysis.h5 (fusion analyze's output files)")
main, flow = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
def fit(f, metric, recipe):
    g = f[f"fits/{metric}/{recipe}"]
    c = g["flops"][:]
    return dict(a=g.attrs["intercept"], b=g.attrs["slope"], r2=g.attrs["r_squared"], lo=min(c), hi=max(c))
for metric in ["fd_fmnist", "t2i_accuracy", "caption_accuracy", "text_ppl"]:
    f = fit(flow, metric, "transfusion")
    print(f"{metric:17} transfusion-flow slope {f['b']:+.3f} R² {f['r2']:.3f}")
    for recipe in ["chameleon", "showo", "transfusion"]:
        o = fit(main, metric, recipe)
        for (na, A), (nb, B) in [((recipe, o), ("flow", f)), (("flow", f), (recipe, o))]:
            x = math.log10(min(A["hi"], B["hi"]))
            if B["b"] >= 0: print(f"   {na:>11} → {nb:11}: no crossing"); continue
            r = (A["a"] - B["a"] + (A["b"] - B["b"]) * x) / B["b"]
            need = x + r
            ex = need < math.log10(B["lo"]) - 1e-9 or need > math.log10(B["hi"]) + 1e-9
            print(f"   A {na:>11} → B {nb:11}: C* {10**x:.3e}  y* {10**(A['a']+A['b']*x):.4g}  ratio {10**r:.3g}{' (extrapolated)' if ex else ''}")
