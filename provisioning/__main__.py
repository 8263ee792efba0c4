"""`python -m provisioning` is `parkctl`."""

from provisioning.cli import main

main()
