"""site_daemon: see README (live system, issue 3)."""
