"""The bench's profiling hook (``python -m services.bench --profile DIR``), imported by Python
at start-up because the bench puts this folder first on PYTHONPATH. It does nothing unless
BENCH_PROFILE names a file: then SIGUSR1 starts cProfile on the main thread (the event loop's)
and SIGUSR2 stops it and writes the statistics there, so that only the measured window is
profiled. Not a package module: never imported by the services themselves."""

import os

if os.environ.get("BENCH_PROFILE"):
    import cProfile
    import signal
    from types import FrameType

    _profiler = cProfile.Profile()

    def _start(signum: int, frame: FrameType | None) -> None:
        _profiler.enable()

    def _stop(signum: int, frame: FrameType | None) -> None:
        _profiler.disable()
        _profiler.dump_stats(os.environ["BENCH_PROFILE"].replace("{pid}", str(os.getpid())))

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
