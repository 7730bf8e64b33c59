"""The scenario suite: on the lab, break healthy workloads in known ways and measure what AMOS does."""
