"""Looking at the lab: its Prometheus (client), the lgcloud exporter, the SLA evaluation, the
utilization report, and the picture of its topology."""
