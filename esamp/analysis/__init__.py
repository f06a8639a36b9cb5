"""Everything that reads finished runs and nothing that writes samples: the last box of the flow
(config -> engine -> samples -> grading -> metrics -> results -> analysis).

    runs             find and load results.json / samples.jsonl; the names runs get in tables
    stats            the paired bootstrap over problems or prompts: weights, means, percentile intervals
    tables           Markdown tables and setting formatting shared by every report
    plotting         figure helpers shared by every plot (backend, colours, one legend layout, the k axis)
    compare          the paired Pass@k comparison of arms against a baseline: numbers and report
    frontier         creative writing: each arm against the temperature curve of diversity vs perplexity,
                     the divergence along the generation (Fig. 4a); its arms: frontier_arms; its report:
                     frontier_report
    sweep            one table (and Pass@k / Distiller-loss figures) of every run below a folder
    notebook         what notebooks/ adds on top: folders from the environment, the tables it shows

The command lines are in `esamp.cli` (compare, frontier, aggregate). The end-of-run report a run prints
(`esamp.report`) is not here: the pipeline writes it while producing results, and nothing in the pipeline
imports this package.

Submodules are imported by name (`from esamp.analysis.compare import compare_runs`); this file imports none of
them, so loading runs never pulls in matplotlib or pandas.
"""
