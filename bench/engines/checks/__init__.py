"""Port checks: replay the official implementations' fixtures (inputs, weights, outputs) through our ports, on any
device, at the tolerances their READMEs document."""
