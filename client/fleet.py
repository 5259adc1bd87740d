"""`supervisor.py fleet`: the live boxes of a queue, as they registered in the job table."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from journal.fleet_table import FleetRegister, live


def print_fleet(register: FleetRegister, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Every live box: its id, shape, kinds of job, services, whether it drains, and how soon
    its registration lapses unless renewed. Exit 0."""
    now = time.time()
    boxes = live(register.boxes(), now)
    if as_json:
        rows = [
            {
                "box": box.box_id,
                "memory_bytes": box.shape.memory_bytes,
                "cpus": box.shape.cpus,
                "gpus": box.shape.gpus,
                "disk_bytes": box.shape.disk_bytes,
                "queues": list(box.queues),
                "services": list(box.services),
                "draining": box.draining,
                "expires_in_s": round(box.expires_at - now, 1),
            }
            for box in boxes
        ]
        print(json.dumps({"queue": register.queue, "boxes": rows}), file=out)
        return 0
    if not boxes:
        print(f"no live box of {register.queue} in the job table", file=out)
        return 0
    print(f"{len(boxes)} live boxes of {register.queue}:", file=out)
    for box in boxes:
        kinds = "/".join(box.queues) + (f" ({', '.join(box.services)})" if box.services else "")
        state = "draining" if box.draining else "taking jobs"
        expires = f"renewed within {box.expires_at - now:.0f} s"
        print(f"  {box.box_id}: {box.shape.describe()}; {kinds}; {state}; {expires}", file=out)
    return 0
