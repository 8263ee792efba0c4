"""`python -m provisioning` is `parkctl`."""

from provisioning.parkctl.cli import main

main()
