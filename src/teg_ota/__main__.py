"""``python -m teg_ota`` is the ``teg-ota`` command."""

import sys

from teg_ota.app.cli import main

sys.exit(main())
