"""The bottom layer: errors and diagnostic codes, inventories, names, frameworks, atomic files."""
