"""The hostile-input corpus: damaged and malicious checkpoints, broken specs, I/O faults (issue 7)."""
