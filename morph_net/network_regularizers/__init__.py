"""Network regularizers: cost calculator, resource functions, regularizers."""
