"""Output checks (HDF5 through h5py), the process pool that runs them, reports and plots."""
