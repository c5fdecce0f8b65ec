"""Reports on runs: figures, one self-contained HTML page, a Markdown summary."""

from cnnlab.report.html import build_report
from cnnlab.report.markdown import markdown_summary
from cnnlab.report.records import RunRecord, read_run, read_runs

__all__ = ["RunRecord", "build_report", "markdown_summary", "read_run", "read_runs"]
