"""The sync engine: importing into the catalog, planning and running exports."""
