"""``captioner batch`` with a file that ends its process, as a decoder's segmentation fault would.

Run as a script (tests/test_batch.py): ``run_job`` ends the process (``os._exit(139)``) on a
video whose name starts with "crash". With ``CRASH_WORKERS=1`` the worker processes the batch
starts crash on it too (this module is their ``__mp_main__``); without, only the batch's own
process does (as when a batch was killed while captioning an innocent file).
"""

from __future__ import annotations

import os
import sys

from captioner.batch import job as _job
from captioner.batch import local as _local

_run_job = _job.run_job


def crashing(captioner, job, config):
    if job.video.name.startswith("crash"):
        os._exit(139)
    return _run_job(captioner, job, config)


if os.environ.get("CRASH_WORKERS"):
    _local.run_job = crashing

if __name__ == "__main__":
    _local.run_job = crashing
    from captioner.cli import main

    sys.argv = ["captioner", *sys.argv[1:]]
    main()
