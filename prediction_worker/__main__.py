"""`python -m prediction_worker`: the same as the `edgeoff-worker` console script."""

import sys

from prediction_worker.daemon import main

sys.exit(main())
