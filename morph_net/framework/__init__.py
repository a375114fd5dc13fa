"""Framework core: op regularizer manager, op handler interface, combinators."""
