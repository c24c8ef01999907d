"""The code that talks to the calibration archive.

:mod:`.remote_database` is the archive client (:class:`RemoteCalibrationDB`) on
:mod:`.http`; :mod:`.remote_feed` and :mod:`.remote_transfer` read and write
through it; :mod:`.downloads` fetches files into the cache, verified and
atomically, through :mod:`.incoming` and :mod:`.zip_member`; :mod:`.sync` keeps
the local database in step; :mod:`.auth`, :mod:`.keck_login` and
:mod:`.keck_client` hold credentials; :mod:`.download` fetches from KOA itself.
"""

import logging

logger = logging.getLogger(__name__)
