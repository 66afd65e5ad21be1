-- Nothing read the running count of an attempt's log bytes (the cap is the worker's), and keeping
-- it meant an update of the attempt's row, and its lock, for every chunk of log stored.
ALTER TABLE attempts DROP COLUMN log_bytes;
