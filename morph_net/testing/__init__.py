"""Small network builders shared by tests, examples and benchmarks."""
