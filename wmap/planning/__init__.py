"""The Plan (data) and what makes, checks, renders, saves and compares it: compile, checks, hints,
render, serialise, diff. Nothing here reads weight data or imports execution."""
