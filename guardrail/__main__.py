import sys

from guardrail._cli import main

sys.exit(main())
