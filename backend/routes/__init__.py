"""One router per resource: service (/, /health), analyze (uploads), jobs."""
