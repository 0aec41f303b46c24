"""Runner, cost measurement, gates and the command-line interface of RefSR-Bench."""

import warnings

# fvcore.nn.focal_loss calls torch.jit.script at import time, which torch >= 2.10 reports as deprecated on every
# CLI start; the suite never uses that loss.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
