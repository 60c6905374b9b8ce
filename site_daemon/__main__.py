"""`python -m site_daemon`: the same as the `edgeoff-site` console script."""

import sys

from site_daemon.daemon import main

sys.exit(main())
