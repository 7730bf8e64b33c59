import sys

from scenarios.run import main

sys.exit(main())
