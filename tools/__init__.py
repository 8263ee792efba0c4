"""Developer tools: simulators, the demo and benchmarks (not shipped with the package)."""
