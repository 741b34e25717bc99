"""``zoo report``: a Markdown report with PNG plots comparing finished runs."""
