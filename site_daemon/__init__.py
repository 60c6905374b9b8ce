"""site_daemon: one site of the live system (status, profile, heartbeats, task execution, failure injection).

Run it with `edgeoff-site --site ID` (or `python -m site_daemon`); see `site_daemon.daemon`.
"""
