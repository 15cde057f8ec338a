"""The campaign report: one self-contained HTML file."""

from matscreen.tasks.report.html import ReportContext, parity_plot_png, render_report

__all__ = ["ReportContext", "parity_plot_png", "render_report"]
