"""commands layer: the ``refsr-bench`` verbs. argparse lives only here; each verb parses its options into a typed
config and calls one function of a lower layer."""
