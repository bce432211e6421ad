"""Data in: sources, validation, bucketing, gap policy, splits, windows, padding, scaling."""
