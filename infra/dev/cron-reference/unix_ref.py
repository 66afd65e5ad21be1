"""The reference for Orrery's Unix dialect: cronsim (PyPI), an independent implementation that
follows Debian's cron, daylight saving time included.

Reads lines "EXPR<TAB>ZONE<TAB>START_EPOCH_MILLIS<TAB>COUNT" and prints, per line, the next COUNT fire
times after START as comma-separated epoch milliseconds (or "ERROR <message>").
"""
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim

for line in sys.stdin:
    expr, zone, start, count = line.rstrip("\n").split("\t")
    try:
        base = datetime.fromtimestamp(int(start) / 1000, ZoneInfo(zone))
        it = CronSim(expr, base)
        out = [str(int(next(it).timestamp() * 1000)) for _ in range(int(count))]
        print(",".join(out), flush=True)
    except Exception as e:  # noqa: BLE001 - reported to the comparing test
        print(f"ERROR {e}", flush=True)
