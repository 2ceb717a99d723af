"""Views: trends, spectra, images and value/state tables."""

from .auto import AutoView, Unsupported, view_class, view_for
from .base import AttributeState, View
from .image import Image
from .spectrum import Spectrum
from .table import ValueTable
from .trend import Trend

__all__ = [
    "AttributeState",
    "AutoView",
    "Image",
    "Spectrum",
    "Trend",
    "Unsupported",
    "ValueTable",
    "View",
    "view_class",
    "view_for",
]
