"""The public test sets on disk: fetch (download, safe extraction, layout check, manifest, atomic install),
verify (re-hash against the manifest and a pinned canonical manifest) and the cheap check runs record."""
