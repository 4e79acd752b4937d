"""Neural-network building blocks: convolutions (with the CPU conv kernels), GDN, masked
convolutions."""
