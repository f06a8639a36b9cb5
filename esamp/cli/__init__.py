"""The command lines, each `python -m esamp.cli.<name> ARGS` with a `main(argv) -> exit code` that tests call
in-process:

    compare          paired Pass@k comparison of runs against a baseline (esamp.analysis.compare)
    frontier         creative writing: arms against the temperature frontier (esamp.analysis.frontier)
    aggregate        one table and Pass@k figure of every run below a folder (esamp.analysis.sweep)
    select_problems  the committed problem-id list of an experiment (a seeded draw per MATH-500 level)
    bench_generate   decode throughput and MFU against the GEMM roofline, our loop vs HF generate
    bench_overhead   ESamp's throughput overhead against plain sampling, side by side
    profile_esamp    where ESamp's extra time goes, per decode step
    bench_sandbox    wall time of grading HumanEval's canonical solutions, checkouts side by side

`scripts/{compare,frontier,aggregate,select_problems}.py` stay as two-line forwards to these, because
committed experiment READMEs call them by that path. A run itself is `python run.py` (Hydra).
"""
