"""Forecasts meet their actuals: the forecast log, live scores, the monitor run, calibration."""
