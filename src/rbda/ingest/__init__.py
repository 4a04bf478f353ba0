"""Raw data to stamps: downloads, the survey readers, preprocessing to Parquet, the store, splits, the synthetic surveys."""
