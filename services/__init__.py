"""Switchboard's processes: the edge, the realtime worker, and the simulators."""
