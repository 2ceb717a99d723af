"""One look for every view: panels as cards, quiet grids, readable fonts."""

from __future__ import annotations

from bokeh.models import SaveTool
from bokeh.plotting import figure

from .export import slug

#: Inline styles of a view's outer column: a white card with a soft border.
PANEL_STYLES = {
    "background": "#ffffff",
    "border": "1px solid #d9dee7",
    "border-radius": "6px",
    "padding": "8px 10px 6px 10px",
    "box-shadow": "0 1px 2px rgba(16, 24, 40, 0.06)",
}

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def style_figure(fig: figure) -> None:
    """Quiet axes and grids so that the data stands out."""
    fig.title.text_font_size = "14px"
    fig.title.text_font_style = "bold"
    fig.title.text_color = "#1f2937"
    fig.title.text_font = FONT
    fig.outline_line_color = "#d9dee7"
    fig.border_fill_color = "#ffffff"
    fig.min_border_left = 60
    fig.toolbar.logo = None
    fig.toolbar.autohide = True
    for tool in fig.toolbar.tools:
        if isinstance(tool, SaveTool) and tool.filename is None:
            tool.filename = slug(fig.title.text or "plot")  # a PNG with no name prompt
    for axis in (*fig.xaxis, *fig.yaxis):
        axis.axis_label_text_font_size = "12px"
        axis.axis_label_text_font_style = "normal"
        axis.axis_label_text_color = "#333333"
        axis.axis_label_text_font = FONT
        axis.major_label_text_font_size = "11px"
        axis.major_label_text_color = "#4b5563"
        axis.axis_line_color = "#9aa3b2"
        axis.major_tick_line_color = "#9aa3b2"
        axis.minor_tick_line_color = None
    fig.grid.grid_line_color = "#e5e7eb"
    fig.grid.grid_line_alpha = 1.0
