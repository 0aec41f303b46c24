"""Tables, plots and the HTML/LaTeX report, built only from run records."""
