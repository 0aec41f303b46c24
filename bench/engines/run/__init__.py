"""Quality runs: plan the (image × reference policy × method) groups of one dataset under one preset, evaluate
them into records, and execute the plan in one process or under torchrun, writing the run directory."""
