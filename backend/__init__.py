"""The thin HTTP API: accepts uploads, creates jobs, reports status and results."""
