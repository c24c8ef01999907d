"""The code that works on the local calibration cache.

:mod:`.layout` is where files live and how they are placed atomically;
:mod:`.registration` and :mod:`.registration_steps` register calibrations;
:mod:`.lookup` finds them; :mod:`.check` notices files changed on disk;
:mod:`.versions` numbers version families; :mod:`.report` reports on a cache;
:mod:`.locks` holds the lock files (removed after use); :mod:`.permissions`
gives what the store creates the creator's umask and the cache's group;
:mod:`.readonly` reads shared read-only caches; :mod:`.lifecycle` and
:mod:`.prune` retract calibrations and keep the cache within a size;
:mod:`.staging` is a registration's private folder.
"""

import logging

logger = logging.getLogger(__name__)
