"""Evaluation of expression generators on the held-out test subjects (metrics in millimetres).

`corpus` loads the train/test split, `metrics` holds the papers' measures, `classifier` the
expression classifier of Potamias et al. §5.3, `generators` the registry of things that can be
evaluated, `runner` ties them together and `report` writes reports/eval.json and eval.md; `regions` reads
where each label moves (lips apart, brows, mouth corners) against the ground truth.
"""
