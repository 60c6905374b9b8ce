"""`python -m mobile_agent`: the same as the `edgeoff-agent` console script."""

import sys

from mobile_agent.daemon import main

sys.exit(main())
