import sys

from minmax.cli import main

sys.exit(main())
