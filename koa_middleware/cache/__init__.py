"""The code that works on the local calibration cache.

:mod:`.layout` is where files live and how they are placed atomically;
:mod:`.registration` and :mod:`.registration_steps` register calibrations;
:mod:`.lookup` finds them; :mod:`.check` notices files changed on disk;
:mod:`.versions` numbers version families; :mod:`.report` reports on a cache.
"""

import logging

logger = logging.getLogger(__name__)
