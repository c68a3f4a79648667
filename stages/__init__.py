"""DVC stage entry points: `python -m stages.<stage>` reads its params.yaml sections, takes its file paths from
the command line (dvc.yaml names every file of the pipeline) and calls the `rewardkit` library."""
