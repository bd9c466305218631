"""What the test machine's CPU supports, read from /proc/cpuinfo (Linux)."""


def cpu_flags():
    """The CPU's feature flags as a set, or None without /proc/cpuinfo (then a test that
    compares against them skips, saying so)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None
