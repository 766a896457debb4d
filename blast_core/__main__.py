import sys

from blast_core.cli import main

sys.exit(main())
