import sys

from civicstream.cli import main

sys.exit(main())
