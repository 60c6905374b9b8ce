"""mobile_agent: see README (live system, issue 3)."""
