"""`wmap init`: a starting spec proposed from two inventories."""
