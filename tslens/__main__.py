import sys

from tslens.cli import main

sys.exit(main())
