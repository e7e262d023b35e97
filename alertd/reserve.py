"""A reserve of disk space beside the store, given up when the disk fills.

When the disk is full, SQLite cannot commit and no alarm can be recorded, so none would ring. alertd keeps
a ballast file of `size` bytes next to its store; the first commit that fails for lack of space deletes it,
and the commit is retried at once in the space it freed. That buys time to keep answering alarms and to
tell the duty room the server's disk is full. The file is laid again once the disk has room for it twice
over (so re-laying it cannot itself fill the disk).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

CHUNK = 1 << 20


class Reserve:
    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @property
    def held(self) -> bool:
        return self.size > 0 and self.path.exists()

    async def lay(self) -> bool:
        """Create the file if missing and the disk has room for it twice over; True when it is held."""
        if self.size <= 0:
            return False
        return await asyncio.to_thread(self._lay)

    def _lay(self) -> bool:
        if self.path.exists():
            return True
        if shutil.disk_usage(self.path.parent).free < 2 * self.size:
            return False
        partial = self.path.with_name(self.path.name + ".tmp")
        try:
            # Written, not fallocated-sparse: the blocks must really be taken so deleting them frees them.
            with partial.open("wb") as file:
                left = self.size
                while left > 0:
                    file.write(b"\0" * min(CHUNK, left))
                    left -= CHUNK
                file.flush()
                os.fsync(file.fileno())
            partial.rename(self.path)
        except OSError as err:
            partial.unlink(missing_ok=True)
            _LOGGER.warning("Cannot lay the %d-byte disk reserve at %s: %s", self.size, self.path, err)
            return False
        return True

    async def release(self) -> bool:
        """Delete the file; True when there was one to give up."""
        if not self.held:
            return False
        try:
            await asyncio.to_thread(self.path.unlink)
        except OSError as err:
            _LOGGER.error("Cannot delete the disk reserve %s: %s", self.path, err)
            return False
        return True
