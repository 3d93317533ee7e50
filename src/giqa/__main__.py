import sys

from giqa.cli import main

sys.exit(main())
