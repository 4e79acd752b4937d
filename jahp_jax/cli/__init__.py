"""The console commands (`jahp-train`, `jahp-codec`, ...), one module each."""
