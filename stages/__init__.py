"""DVC stage entry points: `python -m stages.<stage>` reads its params.yaml sections, takes its file paths from
the command line (dvc.yaml names every file of the pipeline) and calls the `rewardkit` library."""

from rewardkit.allocator import bound_malloc_arenas

# before torch is imported: glibc fixes its arena limit when a second thread first allocates, and torch's import
# starts one
bound_malloc_arenas()
