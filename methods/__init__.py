"""RefSR and SISR methods behind one small interface (see ``methods.base``)."""
