"""Gin-configured MorphNet experiments: the shrink -> expand -> retrain cycle.

  python3 -m examples.experiment.run_cycle \
      --gin_file=examples/configs/gamma_flops.gin --output_dir=/tmp/cycle

Modules: `data` (datasets), `models` (model families), `training` (fit with
or without a MorphNet regularizer), `cycle` (the stages), `report` (table
and plot), `run_cycle` (the absl/gin entry point), `stats` (means, t
intervals and paired differences over seeds).
"""
