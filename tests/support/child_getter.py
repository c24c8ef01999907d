"""A pipeline process that gets calibrations over and over: ``python -m support.child_getter``.

Arguments: instrument, cache folder, comma-separated ids, rounds. Each get must
return the calibration's own bytes (checked by MD5 while no prune can have
taken the file: the check runs under the calibration's lock). Prints the number
of gets that did.
"""

from __future__ import annotations

import sys

from koa_middleware import CalibrationStore
from koa_middleware.hashing import file_md5


def main() -> None:
    instrument, cache, ids, rounds = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
    good = 0
    with CalibrationStore(instrument, cache, sync_on_init=False) as store:
        for _ in range(int(rounds)):
            for cal_id in ids:
                path, record = store.get_calibration(cal_id)
                with store.layout.lock(cal_id):  # prune takes this lock to remove a file
                    try:
                        same = file_md5(path) == record["file_md5"]
                    except FileNotFoundError:
                        same = True  # pruned between the get and the lock: fetched on next get
                good += same
    print(good)


if __name__ == "__main__":
    main()
