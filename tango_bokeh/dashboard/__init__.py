"""Operator dashboards: YAML files served by ``tango-bokeh serve`` to many viewers at once."""

from .loader import DashboardError, DashboardFile, Problem, load, load_all, parse
from .schema import Dashboard

__all__ = ["Dashboard", "DashboardError", "DashboardFile", "Problem", "load", "load_all", "parse"]
