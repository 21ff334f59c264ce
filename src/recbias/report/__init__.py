"""Reports: audit and experiment results as self-contained HTML, Markdown, CSV and LaTeX."""
