"""Acquisition: everything that knows Tango and nothing of bokeh."""

from .names import AttributeName, InvalidName, parse_name
from .sample import AttributeInfo, Quality, Sample

__all__ = ["AttributeInfo", "AttributeName", "InvalidName", "Quality", "Sample", "parse_name"]
