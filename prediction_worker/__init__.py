"""prediction_worker: see README (live system, issue 3)."""
