"""Latency you can measure: timing, what is timed, calibration and the fit.

  timing: pinned threads, interleaved timing (median or min, wall or CPU).
  measurement: the one method that times models and variants: warm, in
    groups the kernel caches hold, with each one's spread, unstable ones
    measured again then flagged.
  variants: what calibration times (a layer alone at some widths, the whole
    model rebuilt at width fractions and random structures).
  calibration: `calibrate` a LatencyProfile of this machine from a Keras
    model (`CalibrationSettings`), `measure` only, `save_profile`.
  fit: least-squares fit of a profile's per-kind rates and misalignment
    factors to measurements, and the choice of its preferred channel
    multiple.

The profile format (`network_regularizers.latency_profile`) and the resource
function that costs a graph with it (`network_regularizers.profile_resource`,
`hardware`) stay with the regularizers that use them; this package imports
them, never the other way around.
"""
