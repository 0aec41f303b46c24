"""Runner, cost measurement, gates and the command-line interface of RefSR-Bench."""
