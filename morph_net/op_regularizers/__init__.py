"""Op regularizers: per-channel regularization and alive vectors of sources."""
