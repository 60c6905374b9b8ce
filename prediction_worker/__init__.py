"""prediction_worker: the live failure detector and availability predictor of edgeoff (issue 3).

    detector            FixedTimeoutDetector (paper: 10 missed heartbeats of 150 ms), PhiAccrualDetector,
                        Verdict, Shard: pure, time injected
    availability_trace  SiteTrace (up/down intervals, availability windows), SitePredictor (forecaster
                        selection, prior), LANL seeds: pure
    store               PredictionStore: versioned predictions, verdict and window histories in Redis
    daemon              PredictionWorker, the thin shell over MQTT and Redis; `edgeoff-worker` entry point

Run it with `edgeoff-worker` or `python -m prediction_worker` (see `daemon` for the message contract).
"""
